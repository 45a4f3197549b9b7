//! Mail: handlebars templates, well-formed messages (lettre), and the transports that carry
//! them (SMTP or .eml files).
