//! Hostile and careless input against the real server: forged or missing anti-forgery tokens,
//! line breaks and control characters, the honeypot, oversize bodies, rate limits, escaping
//! of council data, and the headers every page carries.

mod web_support;

use council_digest::tokens::LinkPurpose;
use web_support::spawn_apps;

const COUNCIL: &str = "wolverhampton";

fn subscribe_fields<'a>(guard: &'a str, email: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("guard", guard),
        ("email", email),
        ("kind", "resident"),
        ("organisation", ""),
        ("website", ""),
    ]
}

#[tokio::test]
async fn a_subscribe_without_the_form_token_or_with_another_visitors_is_refused() {
    for app in spawn_apps(|_| {}).await {
        let path = format!("/councils/{COUNCIL}/subscribe");
        let (_, cookie, guard) = app.open_form(&format!("/councils/{COUNCIL}")).await;
        let (_, other_cookie, _) = app.open_form(&format!("/councils/{COUNCIL}")).await;

        let attempts = [
            (None, guard.clone()),
            (Some(cookie.clone()), String::new()),
            (Some(other_cookie), guard.clone()),
            (Some(cookie.clone()), format!("{guard}x")),
        ];
        for (cookie, guard) in attempts {
            let page = app
                .post_form(
                    &path,
                    cookie.as_deref(),
                    &subscribe_fields(&guard, "a@example.org"),
                )
                .await;
            assert_eq!(page.status, 403, "{}: {cookie:?}", app.label);
            assert!(page.body.contains("The form has expired"), "{}", page.body);
        }
        assert_eq!(app.count("subscribers").await, 0);
        assert!(app.smtp.messages().is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn line_breaks_and_control_characters_are_refused_and_the_form_keeps_what_was_typed() {
    for app in spawn_apps(|_| {}).await {
        let path = format!("/councils/{COUNCIL}");
        let (_, cookie, guard) = app.open_form(&path).await;

        let page = app
            .post_form(
                &format!("{path}/subscribe"),
                Some(&cookie),
                &[
                    ("guard", &guard),
                    ("email", "jo@example.org\r\nBcc: victim@example.net"),
                    ("kind", "professional"),
                    ("organisation", "Acme"),
                    ("website", ""),
                ],
            )
            .await;
        assert_eq!(page.status, 400, "{}", app.label);
        assert!(
            page.text()
                .contains("There is a problem:</strong> Enter an e-mail address")
        );
        assert!(page.body.contains("value=\"Acme\""));
        assert!(page.body.contains("value=\"professional\" checked"));

        let page = app
            .post_form(
                &format!("{path}/subscribe"),
                Some(&cookie),
                &[
                    ("guard", &guard),
                    ("email", "jo@example.org"),
                    ("kind", "resident"),
                    ("organisation", "Acme\r\nBcc: victim@example.net"),
                    ("website", ""),
                ],
            )
            .await;
        assert_eq!(page.status, 400);
        assert!(page.text().contains(
            "Organisation: must be one line, without line breaks or control characters."
        ));
        assert!(page.body.contains("value=\"jo@example.org\""));

        let page = app
            .post_form(
                &format!("{path}/request"),
                Some(&cookie),
                &[
                    ("guard", &guard),
                    ("name", "Alex\u{7}Reporter"),
                    ("organisation", ""),
                    ("email", "alex@example.com"),
                    ("message", "Please enable it."),
                    ("website", ""),
                ],
            )
            .await;
        assert_eq!(page.status, 400);
        assert!(page.text().contains("Your name: must be one line"));
        assert!(page.body.contains("Please enable it.</textarea>"));

        assert_eq!(app.count("subscribers").await, 0);
        assert_eq!(app.count("enablement_requests").await, 0);
        assert!(app.smtp.messages().is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn a_filled_in_honeypot_stores_nothing_and_sends_nothing() {
    for app in spawn_apps(|_| {}).await {
        let path = format!("/councils/{COUNCIL}");
        let (_, cookie, guard) = app.open_form(&path).await;
        let mut fields = subscribe_fields(&guard, "bot@example.org");
        fields.retain(|(k, _)| *k != "website");
        fields.push(("website", "http://spam.example"));
        let page = app
            .post_form(&format!("{path}/subscribe"), Some(&cookie), &fields)
            .await;
        assert_eq!(page.status, 400);
        assert!(page.text().contains("Leave this field empty"));
        assert_eq!(app.count("subscribers").await, 0);
        assert!(app.smtp.messages().is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    for app in spawn_apps(|s| s.web.max_body_bytes = 2048).await {
        let path = format!("/councils/{COUNCIL}");
        let (_, cookie, guard) = app.open_form(&path).await;
        let long = "x".repeat(4096);
        let mut fields = subscribe_fields(&guard, "big@example.org");
        fields.push(("organisation", &long));
        let page = app
            .post_form(&format!("{path}/request"), Some(&cookie), &fields)
            .await;
        assert_eq!(page.status, 413, "{}", page.body);
        assert!(page.body.contains("Too much was sent"));
        assert_eq!(page.header("referrer-policy"), "no-referrer");
        assert_eq!(app.count("subscribers").await, 0);
        app.stop().await;
    }
}

#[tokio::test]
async fn subscribes_are_limited_per_client_and_per_address_but_unsubscribe_never_is() {
    let apps = spawn_apps(|s| {
        s.web.rate_limit_per_minute = 2;
        s.web.rate_limit_per_address_per_hour = 1;
    })
    .await;
    for app in apps {
        let page = app.subscribe(COUNCIL, "once@example.org").await;
        assert_eq!(page.status, 200, "{}", page.body);
        // A second mail to the same address within the hour is refused.
        let page = app.subscribe("worcester", "once@example.org").await;
        assert_eq!(page.status, 429);
        assert!(
            page.text()
                .contains("Too many e-mails have been sent to this address")
        );
        assert!(page.body.contains("value=\"once@example.org\""));
        // The client's third post within the minute is refused, whatever the address.
        let page = app.subscribe(COUNCIL, "other@example.org").await;
        assert_eq!(page.status, 429);
        assert!(
            page.text()
                .contains("Too many forms have been sent from your connection")
        );
        assert_eq!(
            app.states_of("once@example.org").await,
            [format!("{COUNCIL}:pending")]
        );
        assert_eq!(app.count("subscribers").await, 1);
        assert_eq!(
            app.smtp
                .wait_for_async(1, std::time::Duration::from_secs(10))
                .await
                .len(),
            1
        );

        let id = app.subscriber_id("once@example.org").await;
        let link = app.signed_path(LinkPurpose::Unsubscribe, "/unsubscribe/", id);
        for _ in 0..5 {
            let page = app
                .post_form(&link, None, &[("List-Unsubscribe", "One-Click")])
                .await;
            assert_eq!(page.status, 200);
        }
        assert_eq!(
            app.states_of("once@example.org").await,
            [format!("{COUNCIL}:unsubscribed")]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn council_data_is_escaped_on_every_page() {
    for app in spawn_apps(|_| {}).await {
        sqlx::query("UPDATE councils SET name = $1 WHERE slug = $2")
            .bind("<script>alert('x')</script> & Co")
            .bind(COUNCIL)
            .execute(app.store.pool())
            .await
            .unwrap();
        let page = app.get(&format!("/councils/{COUNCIL}")).await;
        assert!(!page.body.contains("<script>"), "{}", page.body);
        assert!(
            page.body
                .contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co")
        );
        let page = app.get("/?q=script").await;
        assert!(!page.body.contains("<script>"));
        assert!(page.body.contains("&lt;script&gt;"));
        app.stop().await;
    }
}

#[tokio::test]
async fn every_page_carries_a_strict_policy_and_leaks_no_referrer() {
    for app in spawn_apps(|_| {}).await {
        for path in ["/", "/councils/wolverhampton", "/no/such/page", "/healthz"] {
            let page = app.get(path).await;
            let policy = page.header("content-security-policy");
            assert!(policy.contains("default-src 'none'"), "{path}: {policy}");
            assert!(policy.contains("frame-ancestors 'none'"), "{path}");
            assert!(
                !policy.contains("script-src"),
                "{path}: scripts stay under 'none'"
            );
            assert!(!policy.contains("unsafe-inline"), "{path}");
            assert_eq!(page.header("referrer-policy"), "no-referrer", "{path}");
            assert_eq!(page.header("x-content-type-options"), "nosniff", "{path}");
        }
        let page = app.get("/councils/wolverhampton").await;
        let cookie = page.header("set-cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        assert!(!page.body.contains("<script"), "no script on the page");
        assert!(
            !page.body.contains("style=\""),
            "no inline style on the page"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn confirmation_links_that_are_unknown_or_expired_are_refused_and_change_nothing() {
    for app in spawn_apps(|s| s.tokens.confirmation_ttl_hours = 1).await {
        let page = app.get("/confirm/not-a-real-token").await;
        assert_eq!(page.status, 404);
        let (_, cookie, guard) = app.open_form(&format!("/councils/{COUNCIL}")).await;
        let page = app
            .post_form(
                "/confirm/not-a-real-token",
                Some(&cookie),
                &[("guard", &guard)],
            )
            .await;
        assert_eq!(page.status, 404);

        app.subscribe(COUNCIL, "late@example.org").await;
        let mails = app.mails(1).await;
        let confirm = app.link_in(&mails[0], "/confirm/");
        let now = app.store.clock().now();
        app.store.clock().set(now + chrono::Duration::hours(2));
        let page = app.get(&confirm).await;
        assert_eq!(page.status, 404, "{}", page.body);
        let page = app
            .post_form(&confirm, Some(&cookie), &[("guard", &guard)])
            .await;
        assert_eq!(page.status, 404);
        assert_eq!(
            app.states_of("late@example.org").await,
            [format!("{COUNCIL}:pending")]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_confirmation_post_without_the_form_token_does_not_confirm() {
    for app in spawn_apps(|_| {}).await {
        app.subscribe(COUNCIL, "csrf@example.org").await;
        let mails = app.mails(1).await;
        let confirm = app.link_in(&mails[0], "/confirm/");
        let page = app.post_form(&confirm, None, &[]).await;
        assert_eq!(page.status, 403);
        assert_eq!(
            app.states_of("csrf@example.org").await,
            [format!("{COUNCIL}:pending")]
        );
        app.stop().await;
    }
}
