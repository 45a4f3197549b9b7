//! The subscriber flows over real HTTP, a real database and a real SMTP server: subscribe,
//! confirm through the mailed link, preferences, unsubscribe by page and by one-click POST,
//! enablement requests, and the page that does not tell whether an address is known.

mod web_support;

use council_digest::tokens::LinkPurpose;
use web_support::smtp::FaultMode;
use web_support::{spawn_apps, spawn_apps_with_smtp};

/// A limited council in the registry (every council starts limited).
const COUNCIL: &str = "wolverhampton";
const COUNCIL_NAME: &str = "City of Wolverhampton Council";
const OTHER: &str = "worcester";

#[tokio::test]
async fn a_resident_subscribes_confirms_through_the_mailed_link_and_is_counted_in_the_queue() {
    for app in spawn_apps(|_| {}).await {
        let page = app.get(&format!("/councils/{COUNCIL}")).await;
        assert_eq!(page.status, 200, "{}", app.label);
        assert!(
            page.body
                .contains("Detailed weekly summaries are not provided yet")
        );
        assert!(
            page.body
                .contains("Nobody has subscribed to City of Wolverhampton Council yet.")
        );

        let page = app.subscribe(COUNCIL, "jo@example.org").await;
        assert_eq!(page.status, 200, "{}: {}", app.label, page.body);
        assert!(page.body.contains("Check your e-mail"));
        assert_eq!(
            app.states_of("jo@example.org").await,
            [format!("{COUNCIL}:pending")]
        );

        let mails = app.mails(1).await;
        assert_eq!(
            mails[0].to().unwrap().first().unwrap().address().unwrap(),
            "jo@example.org"
        );
        let confirm = app.link_in(&mails[0], "/confirm/");

        // A mail scanner fetching the link changes nothing.
        let (page, cookie, guard) = app.open_form(&confirm).await;
        assert!(page.body.contains("Confirm my subscription"));
        assert!(page.body.contains(COUNCIL_NAME));
        assert_eq!(
            app.states_of("jo@example.org").await,
            [format!("{COUNCIL}:pending")]
        );

        let page = app
            .post_form(&confirm, Some(&cookie), &[("guard", &guard)])
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("You are subscribed"));
        assert_eq!(
            app.states_of("jo@example.org").await,
            [format!("{COUNCIL}:confirmed")]
        );

        // One confirmed resident against a threshold of 25 at weight 1: first of the 382
        // limited councils, 24 more needed.
        let page = app.get(&format!("/councils/{COUNCIL}")).await;
        let text = page.text();
        assert!(
            text.contains(
                "City of Wolverhampton Council is 1st in the queue</strong> of 382 councils \
                 waiting, with 1 resident and 0 professionals. It needs 24 more subscribers \
                 to be supported."
            ),
            "{text}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_subscribe_page_reads_the_same_whether_or_not_the_address_was_known() {
    for app in spawn_apps(|_| {}).await {
        let first = app.subscribe(COUNCIL, "sam@example.org").await;
        let mails = app.mails(1).await;
        let confirm = app.link_in(&mails[0], "/confirm/");
        let (_, cookie, guard) = app.open_form(&confirm).await;
        app.post_form(&confirm, Some(&cookie), &[("guard", &guard)])
            .await;
        assert_eq!(
            app.states_of("sam@example.org").await,
            [format!("{COUNCIL}:confirmed")]
        );

        let again = app.subscribe(COUNCIL, "sam@example.org").await;
        assert_eq!(
            (first.status, &first.body),
            (again.status, &again.body),
            "{}",
            app.label
        );
        let unknown = app.subscribe(COUNCIL, "nobody@example.org").await;
        assert_eq!(
            unknown
                .body
                .replace("nobody@example.org", "sam@example.org"),
            first.body
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_preferences_page_adds_a_council_by_confirmation_and_drops_an_unticked_one() {
    for app in spawn_apps(|_| {}).await {
        app.subscribe(COUNCIL, "pat@example.org").await;
        let mails = app.mails(1).await;
        let confirm = app.link_in(&mails[0], "/confirm/");
        let (_, cookie, guard) = app.open_form(&confirm).await;
        let done = app
            .post_form(&confirm, Some(&cookie), &[("guard", &guard)])
            .await;
        let start = done.body.find("/preferences/").unwrap();
        let end = start + done.body[start..].find('"').unwrap();
        let preferences = done.body[start..end].to_owned();

        let (page, cookie, guard) = app.open_form(&preferences).await;
        assert!(page.body.contains(&format!("value=\"{COUNCIL}\" checked")));
        let page = app
            .post_form(
                &preferences,
                Some(&cookie),
                &[("guard", &guard), ("council", COUNCIL), ("council", OTHER)],
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body
                .contains("We have sent a link to confirm each new council: Worcester")
        );
        assert_eq!(
            app.states_of("pat@example.org").await,
            [format!("{COUNCIL}:confirmed"), format!("{OTHER}:pending")]
        );
        let mails = app.mails(2).await;
        let second = app.link_in(&mails[1], "/confirm/");
        assert_ne!(second, confirm);

        let page = app
            .post_form(
                &preferences,
                Some(&cookie),
                &[("guard", &guard), ("council", OTHER)],
            )
            .await;
        assert_eq!(page.status, 200);
        assert_eq!(
            app.states_of("pat@example.org").await,
            [
                format!("{COUNCIL}:unsubscribed"),
                format!("{OTHER}:pending")
            ]
        );
        app.stop().await;
    }
}

async fn confirmed_subscriber(app: &web_support::TestApp, email: &str) -> i64 {
    let n = app.smtp.messages().len() + 1;
    app.subscribe(COUNCIL, email).await;
    let mails = app.mails(n).await;
    let confirm = app.link_in(&mails[n - 1], "/confirm/");
    let (_, cookie, guard) = app.open_form(&confirm).await;
    app.post_form(&confirm, Some(&cookie), &[("guard", &guard)])
        .await;
    assert_eq!(app.states_of(email).await, [format!("{COUNCIL}:confirmed")]);
    app.subscriber_id(email).await
}

#[tokio::test]
async fn the_unsubscribe_link_shows_a_button_and_only_its_post_unsubscribes() {
    for app in spawn_apps(|_| {}).await {
        let id = confirmed_subscriber(&app, "lee@example.org").await;
        let link = app.signed_path(LinkPurpose::Unsubscribe, "/unsubscribe/", id);

        let page = app.get(&link).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("Unsubscribe from everything"));
        assert_eq!(
            app.states_of("lee@example.org").await,
            [format!("{COUNCIL}:confirmed")]
        );

        // The page's own button posts the one-click body, with no cookie.
        let page = app
            .post_form(&link, None, &[("List-Unsubscribe", "One-Click")])
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("You are unsubscribed"));
        assert_eq!(
            app.states_of("lee@example.org").await,
            [format!("{COUNCIL}:unsubscribed")]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_one_click_post_unsubscribes_with_any_body_and_no_cookie() {
    for app in spawn_apps(|_| {}).await {
        let bodies = [
            (
                "application/x-www-form-urlencoded",
                "List-Unsubscribe=One-Click",
            ),
            ("application/x-www-form-urlencoded", ""),
            ("text/plain", "\u{1}\u{2} not a form at all"),
        ];
        for (i, (content_type, body)) in bodies.into_iter().enumerate() {
            let email = format!("one-click-{i}@example.org");
            let id = confirmed_subscriber(&app, &email).await;
            let link = app.signed_path(LinkPurpose::Unsubscribe, "/unsubscribe/", id);
            let page = app
                .post_raw(&link, None, content_type, body.to_owned())
                .await;
            assert_eq!(page.status, 200, "{content_type} {body:?}: {}", page.body);
            assert_eq!(
                app.states_of(&email).await,
                [format!("{COUNCIL}:unsubscribed")]
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_one_click_post_with_a_forged_token_changes_nothing_and_is_refused() {
    for app in spawn_apps(|_| {}).await {
        let id = confirmed_subscriber(&app, "kim@example.org").await;
        let genuine = app.signed_path(LinkPurpose::Unsubscribe, "/unsubscribe/", id);
        let tag = genuine.rsplit('.').next().unwrap();
        // Another subscriber's id with this subscriber's tag, a preferences token, and junk.
        let other = council_digest::tokens::SigningKey::from_bytes(b"another-key-another-key-x");
        let forged = [
            format!("/unsubscribe/{}.{tag}", base64_id(id + 1)),
            app.signed_path(LinkPurpose::Preferences, "/unsubscribe/", id),
            format!(
                "/unsubscribe/{}",
                other.sign(LinkPurpose::Unsubscribe, &id.to_string())
            ),
            "/unsubscribe/not-a-token".to_owned(),
        ];
        for link in forged {
            let page = app
                .post_form(&link, None, &[("List-Unsubscribe", "One-Click")])
                .await;
            assert_eq!(page.status, 404, "{link}");
            let page = app.get(&link).await;
            assert_eq!(page.status, 404, "{link}");
        }
        assert_eq!(
            app.states_of("kim@example.org").await,
            [format!("{COUNCIL}:confirmed")]
        );
        app.stop().await;
    }
}

fn base64_id(id: i64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_string())
}

#[tokio::test]
async fn an_enablement_request_is_recorded_for_operators_and_acknowledged_by_mail() {
    for app in spawn_apps(|_| {}).await {
        let (_, cookie, guard) = app.open_form(&format!("/councils/{COUNCIL}")).await;
        let page = app
            .post_form(
                &format!("/councils/{COUNCIL}/request"),
                Some(&cookie),
                &[
                    ("guard", &guard),
                    ("name", "Alex Reporter"),
                    ("organisation", "Express & Star"),
                    ("email", "alex@example.com"),
                    ("message", "We cover every planning committee.\r\nThanks."),
                    ("represents_council", "1"),
                    ("website", ""),
                ],
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("Request received"));

        use sqlx::Row;
        let row = sqlx::query(
            "SELECT r.name, r.organisation, r.email, r.message, r.represents_council, r.state \
             FROM enablement_requests r JOIN councils c ON c.id = r.council_id \
             WHERE c.slug = $1",
        )
        .bind(COUNCIL)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
        assert_eq!(row.try_get::<String, _>(0).unwrap(), "Alex Reporter");
        assert_eq!(row.try_get::<String, _>(1).unwrap(), "Express & Star");
        assert_eq!(row.try_get::<String, _>(2).unwrap(), "alex@example.com");
        assert_eq!(
            row.try_get::<String, _>(3).unwrap(),
            "We cover every planning committee.\r\nThanks."
        );
        assert_eq!(row.try_get::<i64, _>(4).unwrap(), 1);
        assert_eq!(row.try_get::<String, _>(5).unwrap(), "pending");

        let mails = app.mails(1).await;
        assert_eq!(
            mails[0].to().unwrap().first().unwrap().address().unwrap(),
            "alex@example.com"
        );
        assert!(
            mails[0]
                .body_text(0)
                .unwrap()
                .contains("Dear Alex Reporter,")
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_confirmation_the_mail_server_refuses_asks_to_try_again_and_keeps_the_subscription() {
    for app in spawn_apps_with_smtp(FaultMode::Reject, |_| {}).await {
        let page = app.subscribe(COUNCIL, "bounce@example.org").await;
        assert_eq!(page.status, 503, "{}", app.label);
        assert!(
            page.text()
                .contains("We could not send the e-mail just now")
        );
        assert_eq!(
            app.states_of("bounce@example.org").await,
            [format!("{COUNCIL}:pending")]
        );
        assert_eq!(app.smtp.events()[0].outcome, "rejected-550");

        // A request is recorded even when its acknowledgement cannot be sent.
        let (_, cookie, guard) = app.open_form(&format!("/councils/{COUNCIL}")).await;
        let page = app
            .post_form(
                &format!("/councils/{COUNCIL}/request"),
                Some(&cookie),
                &[
                    ("guard", &guard),
                    ("name", "Alex"),
                    ("email", "alex@example.com"),
                    ("message", "Please."),
                ],
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.text().contains("the request is recorded all the same"));
        assert_eq!(app.count("enablement_requests").await, 1);
        app.stop().await;
    }
}
