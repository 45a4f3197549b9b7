//! `council-digest config check`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::settings::SettingsSource;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings and print the effective values, secrets masked. Exits non-zero
    /// when anything is invalid, with one line per problem.
    Check,
}

pub fn run(command: &ConfigCommand, source: &SettingsSource) -> ExitCode {
    match command {
        ConfigCommand::Check => match source.load() {
            Ok(settings) => {
                print!("{}", settings.to_masked_toml());
                eprintln!("settings are valid");
                ExitCode::SUCCESS
            }
            Err(err) => {
                for problem in &err.problems {
                    eprintln!("error: {problem}");
                }
                ExitCode::from(2)
            }
        },
    }
}
