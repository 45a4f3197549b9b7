//! README.md documents every setting: each key of config/default.toml appears in its settings
//! reference (regenerate it with `contrib/settings-reference.py`).

#[test]
fn the_readme_settings_reference_lists_every_key_with_its_default() {
    let readme = include_str!("../README.md");
    let reference = &readme[readme
        .find("## Settings reference")
        .expect("a reference section")..];
    let defaults: toml::Table = council_digest::settings::DEFAULT_TOML.parse().unwrap();
    let mut missing = Vec::new();
    for (section, table) in &defaults {
        let Some(table) = table.as_table() else {
            continue;
        };
        for (key, value) in table {
            let shown = match value {
                toml::Value::String(s) => format!("\"{s}\""),
                other => other.to_string(),
            };
            let row = format!("| `{section}.{key}` | `{shown}` |");
            if !reference.contains(&row) {
                missing.push(row);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README.md lacks or misstates:\n{}",
        missing.join("\n")
    );
}
