//! The default config shipped in the .deb (packaging/motherstream.toml)
//! documents every key with its built-in default: uncommenting every
//! `#key = value` line must give exactly `Config::default()`, and every key
//! of the config must appear.

use motherstream::config::Config;

const SHIPPED: &str = include_str!("../packaging/motherstream.toml");

fn uncommented() -> String {
    SHIPPED
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_config_as_is_gives_the_defaults() {
    assert_eq!(Config::parse(SHIPPED).unwrap(), Config::default());
}

#[test]
fn uncommented_defaults_are_the_built_in_defaults() {
    let cfg = Config::parse(&uncommented()).unwrap();
    assert_eq!(cfg, Config::default());
    cfg.validate().unwrap();
}

#[test]
fn every_key_is_documented() {
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let documented = toml::from_str::<toml::Value>(&uncommented()).unwrap();
    let mut missing = Vec::new();
    for (section, table) in defaults.as_table().unwrap() {
        for key in table.as_table().unwrap().keys() {
            if documented.get(section).and_then(|s| s.get(key)).is_none() {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
}

/// The man page's CONFIGURATION section names every key under its
/// `.SS [section]` heading.
#[test]
fn every_key_is_in_the_man_page() {
    const MAN: &str = include_str!("../packaging/motherstream.8");
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let mut missing = Vec::new();
    for (section, table) in defaults.as_table().unwrap() {
        let heading = format!(".SS [{section}]\n");
        let start = MAN.find(&heading).map(|i| i + heading.len());
        let body = start.map(|s| {
            let end = MAN[s..].find("\n.S").map_or(MAN.len(), |e| s + e);
            &MAN[s..end]
        });
        for key in table.as_table().unwrap().keys() {
            let named = body.is_some_and(|b| {
                b.lines()
                    .filter(|l| l.starts_with(".BR "))
                    .any(|l| l.split([' ', ',', '"']).any(|w| w == key))
            });
            if !named {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from motherstream(8): {missing:?}"
    );
}
