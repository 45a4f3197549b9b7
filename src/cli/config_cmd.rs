//! `council-digest config check`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::settings::SettingsSource;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings and print the effective values, secrets masked. Exits non-zero
    /// when anything is invalid, with one line per problem. The SMTP TLS set-up is prepared
    /// too (so an unreadable `smtp.ca_file` shows here), but nothing is contacted.
    Check,
}

pub fn run(command: &ConfigCommand, source: &SettingsSource) -> ExitCode {
    match command {
        ConfigCommand::Check => match source.load() {
            Ok(settings) => match crate::mail::transport::check_tls_settings(&settings) {
                Ok(()) => {
                    print!("{}", settings.to_masked_toml());
                    eprintln!("settings are valid");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::from(2)
                }
            },
            Err(err) => {
                for problem in &err.problems {
                    eprintln!("error: {problem}");
                }
                ExitCode::from(2)
            }
        },
    }
}
