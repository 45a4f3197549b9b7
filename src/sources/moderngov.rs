//! The ModernGov web service (`{base}/mgWebService.asmx/...`), as about 300 UK councils run it:
//! `GetCommittees`, `GetMeetings` per committee over a date range, and `GetMeeting` for one
//! meeting's agenda, documents and attendees.
//!
//! Its quirks: counts carry stray spaces (`<meetingscount> 2</meetingscount>`), empty values
//! are white space, flags are `True`/`False`, dates are `dd/mm/yyyy` and times `10.00 am` in UK
//! local time, and agenda text and minutes are escaped Word HTML.

use chrono::{NaiveDate, NaiveTime};
use serde::Deserialize;

use crate::domain::UK_ZONE;
use crate::sources::html::{html_to_plain, resolve_link, sanitise_html};
use crate::sources::uktime::{display_title, parse_uk_date, parse_uk_time, uk_start};
use crate::store::meetings::{
    DetailState, NewAgendaItem, NewAttendee, NewCommittee, NewDocument, NewMeeting,
    NewMeetingDetail,
};

/// A response that is not what the web service should have sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedXml(pub String);

/// `GetCommittees?`
pub fn committees_url(base: &str) -> String {
    format!(
        "{}/mgWebService.asmx/GetCommittees",
        base.trim_end_matches('/')
    )
}

/// `GetMeetings?lCommitteeId=..&sFromDate=dd/mm/yyyy&sToDate=dd/mm/yyyy`
pub fn meetings_url(base: &str, committee_id: &str, from: NaiveDate, to: NaiveDate) -> String {
    format!(
        "{}/mgWebService.asmx/GetMeetings?lCommitteeId={}&sFromDate={}&sToDate={}",
        base.trim_end_matches('/'),
        committee_id,
        from.format("%d/%m/%Y"),
        to.format("%d/%m/%Y")
    )
}

/// `GetMeeting?lMeetingId=..`
pub fn meeting_url(base: &str, meeting_id: &str) -> String {
    format!(
        "{}/mgWebService.asmx/GetMeeting?lMeetingId={meeting_id}",
        base.trim_end_matches('/')
    )
}

/// The public page of a meeting.
pub fn meeting_page_url(base: &str, committee_id: &str, meeting_id: &str) -> String {
    format!(
        "{}/ieListDocuments.aspx?CId={committee_id}&MId={meeting_id}",
        base.trim_end_matches('/')
    )
}

/// A trimmed value; white space only is nothing.
fn text(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn truthy(value: &Option<String>) -> bool {
    text(value).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The name of the first element, to tell a ModernGov answer from an error page.
fn root_element(xml: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(start))
            | Ok(quick_xml::events::Event::Empty(start)) => {
                return Some(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn parse_document<'de, T: Deserialize<'de>>(
    xml: &'de str,
    root: &str,
    what: &str,
) -> Result<T, MalformedXml> {
    match root_element(xml) {
        Some(found) if found.eq_ignore_ascii_case(root) => {}
        Some(found) => {
            return Err(MalformedXml(format!(
                "{what}: expected a <{root}> document, found <{found}>"
            )));
        }
        None => return Err(MalformedXml(format!("{what}: not an XML document"))),
    }
    quick_xml::de::from_str(xml).map_err(|err| MalformedXml(format!("{what}: {err}")))
}

#[derive(Debug, Deserialize)]
struct CommitteesXml {
    #[serde(rename = "committee", default)]
    committees: Vec<CommitteeXml>,
}

#[derive(Debug, Deserialize)]
struct CommitteeXml {
    committeeid: Option<String>,
    committeetitle: Option<String>,
    committeedeleted: Option<String>,
    committeeexpired: Option<String>,
    committeecategory: Option<String>,
}

/// Reads a `GetCommittees` answer. Committees without an id or title are skipped.
pub fn parse_committees(xml: &str) -> Result<Vec<NewCommittee>, MalformedXml> {
    let parsed: CommitteesXml = parse_document(xml, "committees", "GetCommittees")?;
    Ok(parsed
        .committees
        .iter()
        .filter_map(|c| {
            Some(NewCommittee {
                external_id: text(&c.committeeid)?,
                title: text(&c.committeetitle)?,
                category: text(&c.committeecategory),
                expired: truthy(&c.committeeexpired),
                deleted: truthy(&c.committeedeleted),
            })
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct GetMeetingsXml {
    #[serde(rename = "committee", default)]
    committees: Vec<MeetingsCommitteeXml>,
}

#[derive(Debug, Deserialize)]
struct MeetingsCommitteeXml {
    committeeid: Option<String>,
    committeetitle: Option<String>,
    committeemeetings: Option<CommitteeMeetingsXml>,
}

#[derive(Debug, Default, Deserialize)]
struct CommitteeMeetingsXml {
    #[serde(rename = "meeting", default)]
    meetings: Vec<ListMeetingXml>,
}

#[derive(Debug, Deserialize)]
struct ListMeetingXml {
    meetingid: Option<String>,
    meetingdate: Option<String>,
    meetingstatus: Option<String>,
    meetingtime: Option<String>,
}

/// One meeting as `GetMeetings` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMeeting {
    pub meeting_id: String,
    pub committee_id: Option<String>,
    pub committee_title: Option<String>,
    pub date: NaiveDate,
    /// The time as given, which may be unreadable (see [`parse_uk_time`]).
    pub raw_time: Option<String>,
    pub status: Option<String>,
}

/// What a `GetMeetings` answer holds: the meetings, and one warning per meeting skipped
/// because it had no id or no readable date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeetingList {
    pub meetings: Vec<ListedMeeting>,
    pub warnings: Vec<String>,
}

/// Reads a `GetMeetings` answer.
pub fn parse_meetings(xml: &str) -> Result<MeetingList, MalformedXml> {
    let parsed: GetMeetingsXml = parse_document(xml, "getmeetings", "GetMeetings")?;
    let mut out = MeetingList::default();
    for committee in &parsed.committees {
        let Some(list) = &committee.committeemeetings else {
            continue;
        };
        for meeting in &list.meetings {
            let Some(id) = text(&meeting.meetingid) else {
                out.warnings
                    .push("a meeting without an id was skipped".to_owned());
                continue;
            };
            let raw_date = text(&meeting.meetingdate).unwrap_or_default();
            let Some(date) = parse_uk_date(&raw_date) else {
                out.warnings.push(format!(
                    "meeting {id}: the date `{raw_date}` is not dd/mm/yyyy; skipped"
                ));
                continue;
            };
            out.meetings.push(ListedMeeting {
                meeting_id: id,
                committee_id: text(&committee.committeeid),
                committee_title: text(&committee.committeetitle),
                date,
                raw_time: text(&meeting.meetingtime),
                status: text(&meeting.meetingstatus),
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct MeetingXml {
    meetingid: Option<String>,
    meetingdate: Option<String>,
    meetingstatus: Option<String>,
    meetingtime: Option<String>,
    meetingplannedfinishtime: Option<String>,
    meetinglocation: Option<String>,
    agendaitems: Option<AgendaItemsXml>,
    attendees: Option<AttendeesXml>,
}

#[derive(Debug, Default, Deserialize)]
struct AgendaItemsXml {
    #[serde(rename = "agendaitem", default)]
    items: Vec<AgendaItemXml>,
}

#[derive(Debug, Deserialize)]
struct AgendaItemXml {
    agendaitemid: Option<String>,
    agendaitemtitle: Option<String>,
    agendatext: Option<String>,
    fulldisplaynumberformat: Option<String>,
    minutesnonemptyhtmlbody: Option<String>,
    isrestricted: Option<String>,
    linkeddocuments: Option<LinkedDocumentsXml>,
}

#[derive(Debug, Default, Deserialize)]
struct LinkedDocumentsXml {
    #[serde(rename = "linkeddoc", default)]
    documents: Vec<LinkedDocXml>,
}

#[derive(Debug, Deserialize)]
struct LinkedDocXml {
    attachmentid: Option<String>,
    title: Option<String>,
    url: Option<String>,
    isrestricted: Option<String>,
    publicationdate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AttendeesXml {
    #[serde(rename = "attendee", default)]
    attendees: Vec<AttendeeXml>,
}

#[derive(Debug, Deserialize)]
struct AttendeeXml {
    #[serde(rename = "@memberid")]
    memberid: Option<String>,
    #[serde(rename = "@name")]
    name: Option<String>,
    #[serde(rename = "@roledescription")]
    roledescription: Option<String>,
    #[serde(rename = "@attendance")]
    attendance: Option<String>,
    #[serde(rename = "@politicalparty")]
    politicalparty: Option<String>,
}

/// One meeting as `GetMeeting` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MeetingDetail {
    pub meeting_id: String,
    pub date: Option<NaiveDate>,
    pub raw_time: Option<String>,
    pub status: Option<String>,
    pub planned_finish: Option<NaiveTime>,
    pub location: Option<String>,
    pub detail: NewMeetingDetail,
}

/// Reads a `GetMeeting` answer; relative document links are resolved against `base`.
/// Restricted items and documents (not open to the public) are left out.
pub fn parse_meeting_detail(xml: &str, base: &str) -> Result<MeetingDetail, MalformedXml> {
    let parsed: MeetingXml = parse_document(xml, "meeting", "GetMeeting")?;
    let meeting_id = text(&parsed.meetingid)
        .ok_or_else(|| MalformedXml("GetMeeting: the meeting has no id".to_owned()))?;
    let mut detail = NewMeetingDetail::default();

    for item in parsed
        .agendaitems
        .as_ref()
        .map(|a| a.items.as_slice())
        .unwrap_or_default()
    {
        if truthy(&item.isrestricted) {
            continue;
        }
        let Some(item_id) = text(&item.agendaitemid) else {
            continue;
        };
        let text_html = text(&item.agendatext).and_then(|h| sanitise_html(&h));
        let minutes_html = text(&item.minutesnonemptyhtmlbody).and_then(|h| sanitise_html(&h));
        detail.agenda_items.push(NewAgendaItem {
            external_id: item_id.clone(),
            number: text(&item.fulldisplaynumberformat),
            title: text(&item.agendaitemtitle).unwrap_or_else(|| "(untitled item)".to_owned()),
            text_plain: text_html.as_deref().map(html_to_plain),
            text_html,
            minutes_plain: minutes_html.as_deref().map(html_to_plain),
            minutes_html,
        });
        let documents = item
            .linkeddocuments
            .as_ref()
            .map(|d| d.documents.as_slice())
            .unwrap_or_default();
        for document in documents {
            if truthy(&document.isrestricted) {
                continue;
            }
            let (Some(id), Some(url)) = (
                text(&document.attachmentid),
                text(&document.url).and_then(|u| resolve_link(base, &u)),
            ) else {
                continue;
            };
            if detail.documents.iter().any(|d| d.external_id == id) {
                continue;
            }
            detail.documents.push(NewDocument {
                external_id: id,
                agenda_item_external_id: Some(item_id.clone()),
                title: text(&document.title)
                    .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_else(|| "Document".to_owned()),
                url,
                published_on: text(&document.publicationdate).and_then(|d| parse_uk_date(&d)),
            });
        }
    }

    let attendees = parsed
        .attendees
        .as_ref()
        .map(|a| a.attendees.as_slice())
        .unwrap_or_default();
    for attendee in attendees {
        let Some(name) = text(&attendee.name) else {
            continue;
        };
        detail.attendees.push(NewAttendee {
            external_id: text(&attendee.memberid).unwrap_or_else(|| name.clone()),
            name,
            role: text(&attendee.roledescription),
            attendance: text(&attendee.attendance),
            party: text(&attendee.politicalparty),
        });
    }

    Ok(MeetingDetail {
        meeting_id,
        date: text(&parsed.meetingdate).and_then(|d| parse_uk_date(&d)),
        raw_time: text(&parsed.meetingtime),
        status: text(&parsed.meetingstatus),
        planned_finish: text(&parsed.meetingplannedfinishtime).and_then(|t| parse_uk_time(&t)),
        location: text(&parsed.meetinglocation),
        detail,
    })
}

/// Builds the meeting to store from its list entry and, for fully supported councils, its
/// detail. The detail's date, time and status win over the list's (they are newer).
pub fn build_meeting(
    base: &str,
    committee_id: &str,
    committee_title: &str,
    listed: &ListedMeeting,
    detail: Option<MeetingDetail>,
) -> NewMeeting {
    let date = detail.as_ref().and_then(|d| d.date).unwrap_or(listed.date);
    let raw_time = detail
        .as_ref()
        .and_then(|d| d.raw_time.clone())
        .or_else(|| listed.raw_time.clone());
    let time = raw_time.as_deref().and_then(parse_uk_time);
    let mut warnings = Vec::new();
    if let (Some(raw), None) = (&raw_time, time) {
        warnings.push(format!(
            "the time `{raw}` could not be read; kept the date only"
        ));
    }
    let (starts_at, gap_warning) = uk_start(date, time);
    warnings.extend(gap_warning);
    let status = detail
        .as_ref()
        .and_then(|d| d.status.clone())
        .or_else(|| listed.status.clone())
        .unwrap_or_else(|| "Unknown".to_owned());
    let ends_at = detail
        .as_ref()
        .and_then(|d| d.planned_finish)
        .filter(|finish| time.is_some_and(|start| *finish > start))
        .map(|finish| uk_start(date, Some(finish)).0);
    let committee_title = listed.committee_title.as_deref().unwrap_or(committee_title);

    NewMeeting {
        external_id: listed.meeting_id.clone(),
        committee_external_id: Some(committee_id.to_owned()),
        committee_title: committee_title.to_owned(),
        title: display_title(committee_title, date, time),
        local_date: date,
        local_time: time,
        timezone: UK_ZONE.name().to_owned(),
        starts_at,
        ends_at,
        all_day: false,
        status,
        location: detail.as_ref().and_then(|d| d.location.clone()),
        url: Some(meeting_page_url(base, committee_id, &listed.meeting_id)),
        parse_warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
        detail: match detail {
            Some(d) => DetailState::Fetched(d.detail),
            None => DetailState::NotFetched,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/real/moderngov-ws"
    );
    const OWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/moderngov");

    fn real(name: &str) -> Option<String> {
        let path = format!("{REAL}/{name}");
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(_) => {
                eprintln!("skipping: the real capture {path} is not here");
                None
            }
        }
    }

    fn own(name: &str) -> String {
        std::fs::read_to_string(format!("{OWN}/{name}")).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn manchester_committees_are_read_with_their_expired_flag() {
        let Some(xml) = real("manchester_GetCommittees_trimmed.xml") else {
            return;
        };
        let committees = parse_committees(&xml).unwrap();
        let ids: Vec<(&str, bool)> = committees
            .iter()
            .map(|c| (c.external_id.as_str(), c.expired))
            .collect();
        assert_eq!(ids, [("312", true), ("163", false), ("144", false)]);
        assert_eq!(committees[2].title, "Audit Committee");
        assert_eq!(
            committees[2].category.as_deref(),
            Some("Governance and Decision Making Committees")
        );
    }

    #[test]
    fn the_manchester_meeting_list_has_one_cancelled_and_one_confirmed_meeting() {
        let Some(xml) = real("manchester_GetMeetings_audit_cancelled_and_confirmed.xml") else {
            return;
        };
        let list = parse_meetings(&xml).unwrap();
        assert!(list.warnings.is_empty());
        let seen: Vec<(&str, NaiveDate, Option<&str>)> = list
            .meetings
            .iter()
            .map(|m| (m.meeting_id.as_str(), m.date, m.status.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("4966", date(2026, 1, 13), Some("Cancelled")),
                ("4967", date(2026, 2, 10), Some("Confirmed")),
            ]
        );
        let cancelled = build_meeting(
            "https://democracy.manchester.gov.uk",
            "144",
            "Audit Committee",
            &list.meetings[0],
            None,
        );
        assert_eq!(
            cancelled.starts_at.to_rfc3339(),
            "2026-01-13T10:00:00+00:00"
        );
        assert_eq!(cancelled.status, "Cancelled");
        assert_eq!(
            cancelled.url.as_deref(),
            Some("https://democracy.manchester.gov.uk/ieListDocuments.aspx?CId=144&MId=4966")
        );
        assert_eq!(
            cancelled.title,
            "Audit Committee - Tuesday, 13th January, 2026 10.00 am"
        );
    }

    #[test]
    fn manchester_meeting_4967_has_its_items_minutes_documents_and_room() {
        let Some(xml) = real("manchester_GetMeeting_4967_with_minutes_and_docs.xml") else {
            return;
        };
        let detail = parse_meeting_detail(&xml, "https://democracy.manchester.gov.uk").unwrap();
        assert_eq!(detail.meeting_id, "4967");
        assert_eq!(
            detail.location.as_deref(),
            Some("Council Antechamber, Level 2, Town Hall Extension")
        );
        assert_eq!(detail.planned_finish, NaiveTime::from_hms_opt(14, 0, 0));
        let items: Vec<(Option<&str>, &str)> = detail
            .detail
            .agenda_items
            .iter()
            .map(|i| (i.number.as_deref(), i.title.as_str()))
            .collect();
        assert_eq!(
            items,
            [(Some("1."), "Minutes"), (Some("9."), "Work Programme")]
        );
        let first = &detail.detail.agenda_items[0];
        assert_eq!(
            first.text_plain.as_deref(),
            Some(
                "To approve as a correct record the minutes of the meeting held on 25 \
                 November 2025."
            )
        );
        assert_eq!(
            first.text_html.as_deref(),
            Some(
                "<p>To approve as a correct record\nthe minutes of the meeting held on 25 \
                 November 2025.</p>"
            )
        );
        assert!(
            first
                .minutes_plain
                .as_deref()
                .unwrap()
                .starts_with("To approve the minutes")
        );
        let documents: Vec<(&str, &str)> = detail
            .detail
            .documents
            .iter()
            .map(|d| (d.external_id.as_str(), d.url.as_str()))
            .collect();
        assert_eq!(
            documents,
            [
                (
                    "60860",
                    "https://democracy.manchester.gov.uk/mgConvert2PDF.aspx?ID=60860"
                ),
                (
                    "60909",
                    "https://democracy.manchester.gov.uk/mgConvert2PDF.aspx?ID=60909"
                ),
            ]
        );
        assert_eq!(
            detail.detail.documents[0].title,
            "6 - CHAIR APPROVED Minutes Audit Committee 25 Nov 2025"
        );
        assert_eq!(detail.detail.attendees[0].name, "Councillor Basil Curley");
        assert_eq!(detail.detail.attendees[0].party.as_deref(), Some("LAB"));

        let listed = ListedMeeting {
            meeting_id: "4967".into(),
            committee_id: Some("144".into()),
            committee_title: Some("Audit Committee".into()),
            date: date(2026, 2, 10),
            raw_time: Some("10.00 am".into()),
            status: Some("Confirmed".into()),
        };
        let meeting = build_meeting(
            "https://democracy.manchester.gov.uk",
            "144",
            "Audit Committee",
            &listed,
            Some(detail),
        );
        assert_eq!(meeting.starts_at.to_rfc3339(), "2026-02-10T10:00:00+00:00");
        assert_eq!(
            meeting.ends_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-02-10T14:00:00+00:00")
        );
        assert_eq!(meeting.parse_warning, None);
    }

    #[test]
    fn the_cancelled_manchester_meeting_has_no_items_and_keeps_its_time() {
        let Some(xml) = real("manchester_GetMeeting_4966_cancelled_no_agenda.xml") else {
            return;
        };
        let detail = parse_meeting_detail(&xml, "https://democracy.manchester.gov.uk").unwrap();
        assert_eq!(detail.status.as_deref(), Some("Cancelled"));
        assert_eq!(detail.raw_time.as_deref(), Some("10.00 am"));
        assert!(detail.detail.agenda_items.is_empty());
        assert!(detail.detail.documents.is_empty());
        assert_eq!(detail.detail.attendees.len(), 1);
    }

    #[test]
    fn an_unreadable_time_keeps_the_meeting_on_its_date_with_a_warning() {
        let list = parse_meetings(&own("GetMeetings_odd_values.xml")).unwrap();
        assert_eq!(list.meetings.len(), 2, "{list:?}");
        assert_eq!(list.warnings.len(), 1, "{:?}", list.warnings);
        assert!(
            list.warnings[0].contains("31/13/2026"),
            "{:?}",
            list.warnings
        );
        let odd = build_meeting(
            "https://e.gov.uk",
            "7",
            "Licensing",
            &list.meetings[0],
            None,
        );
        assert_eq!(odd.local_date, date(2026, 7, 1));
        assert_eq!(odd.local_time, None);
        // Local midnight in BST.
        assert_eq!(odd.starts_at.to_rfc3339(), "2026-06-30T23:00:00+00:00");
        assert!(
            odd.parse_warning
                .as_deref()
                .unwrap()
                .contains("To be confirmed")
        );
        assert_eq!(odd.title, "Licensing Committee - Wednesday, 1st July, 2026");
        let summer = build_meeting(
            "https://e.gov.uk",
            "7",
            "Licensing",
            &list.meetings[1],
            None,
        );
        assert_eq!(summer.starts_at.to_rfc3339(), "2026-07-08T17:30:00+00:00");
        assert_eq!(summer.status, "Confirmed");
    }

    #[test]
    fn relative_document_links_with_spaces_resolve_and_restricted_ones_are_left_out() {
        let detail =
            parse_meeting_detail(&own("GetMeeting_relative_links.xml"), "https://e.gov.uk")
                .unwrap();
        let urls: Vec<&str> = detail
            .detail
            .documents
            .iter()
            .map(|d| d.url.as_str())
            .collect();
        assert_eq!(
            urls,
            ["https://e.gov.uk/documents/s7942/polc2%20-%2023.09.2015.pdf"]
        );
        assert_eq!(detail.detail.agenda_items.len(), 1);
        assert_eq!(detail.detail.agenda_items[0].text_html, None);
        assert_eq!(detail.location, None);
    }

    #[test]
    fn an_html_page_or_another_document_is_not_a_meeting_list() {
        let err = parse_meetings("<!DOCTYPE html><html><body>Error</body></html>").unwrap_err();
        assert!(err.0.contains("found <html>"), "{err}");
        let err = parse_committees("<?xml version=\"1.0\"?><getmeetings/>").unwrap_err();
        assert!(err.0.contains("expected a <committees>"), "{err}");
        assert!(parse_meeting_detail("not xml at all", "https://e.gov.uk").is_err());
        assert!(parse_meetings("<getmeetings><committee><committeeid>1").is_err());
    }
}
