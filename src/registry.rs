//! The registry of the 382 current UK principal councils, built into the binary from
//! `config/councils.toml` (facts from mySociety and Democracy Club; see README.md).

use std::sync::OnceLock;

use serde::Deserialize;

use crate::domain::{CouncilSlug, Platform};

const REGISTRY_TOML: &str = include_str!("../config/councils.toml");

/// One council as the registry describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCouncil {
    pub slug: CouncilSlug,
    pub name: String,
    pub gss_code: String,
    pub nation: String,
    pub council_type: String,
    pub platform: Platform,
    pub base_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    council: Vec<RegistryCouncil>,
}

/// The councils, sorted by slug.
#[derive(Debug)]
pub struct Registry {
    councils: Vec<RegistryCouncil>,
}

impl Registry {
    /// The registry built into the binary. It is checked by the tests below, so a failure to
    /// parse it is a build defect.
    pub fn builtin() -> &'static Registry {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        REGISTRY.get_or_init(|| match Registry::parse(REGISTRY_TOML) {
            Ok(registry) => registry,
            Err(err) => panic!("the built-in council registry does not parse: {err}"),
        })
    }

    pub fn parse(text: &str) -> Result<Registry, String> {
        let file: RegistryFile = toml::from_str(text).map_err(|err| err.to_string())?;
        let mut councils = file.council;
        councils.sort_by(|a, b| a.slug.cmp(&b.slug));
        if let Some(pair) = councils
            .windows(2)
            .find(|pair| pair[0].slug == pair[1].slug)
        {
            return Err(format!("council `{}` appears twice", pair[0].slug));
        }
        Ok(Registry { councils })
    }

    pub fn councils(&self) -> &[RegistryCouncil] {
        &self.councils
    }

    pub fn get(&self, slug: &CouncilSlug) -> Option<&RegistryCouncil> {
        self.councils
            .binary_search_by(|c| c.slug.cmp(slug))
            .ok()
            .map(|i| &self.councils[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_holds_the_382_councils_by_nation() {
        let registry = Registry::builtin();
        assert_eq!(registry.councils().len(), 382);
        let count = |nation: &str| {
            registry
                .councils()
                .iter()
                .filter(|c| c.nation == nation)
                .count()
        };
        assert_eq!(count("England"), 317);
        assert_eq!(count("Scotland"), 32);
        assert_eq!(count("Wales"), 22);
        assert_eq!(count("Northern Ireland"), 11);
    }

    #[test]
    fn wolverhampton_is_a_moderngov_council_with_its_gss_code() {
        let slug: CouncilSlug = "wolverhampton".parse().unwrap();
        let council = Registry::builtin().get(&slug).unwrap();
        assert_eq!(council.name, "City of Wolverhampton Council");
        assert_eq!(council.gss_code, "E08000031");
        assert_eq!(council.platform, Platform::ModernGov);
    }

    #[test]
    fn names_with_commas_and_ampersand_free_text_survive() {
        let registry = Registry::builtin();
        assert!(
            registry
                .councils()
                .iter()
                .filter(|c| c.name.contains(','))
                .count()
                >= 3
        );
    }

    #[test]
    fn a_duplicate_slug_is_refused() {
        let one = "[[council]]\nslug = \"a\"\nname = \"A\"\ngss_code = \"E1\"\nnation = \"England\"\n\
                   council_type = \"county\"\nplatform = \"other\"\n";
        let err = Registry::parse(&format!("{one}{one}")).unwrap_err();
        assert!(err.contains("appears twice"));
    }
}
