//! Sources: fetching and parsing councils' committee systems and feeds (ModernGov web
//! service, iCalendar, RSS/Atom) and polling them into the meeting store. Sources never send
//! mail or touch web code.
