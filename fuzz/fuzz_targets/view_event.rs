//! A transport record (see `tramline_fuzz::Framed`; `@topic` names the topic) read by every
//! declared view of examples/eventuate-view/tramline.toml and fuzz_targets/view_event.toml,
//! as `serve view` does: the record's envelope in the view's format, the declaration's
//! change (`Declaration::decode`), each value it writes in its column's canonical text
//! (`canonical_value`, what the store binds and reads back), merged into a row.
//!
//! Checks: nothing panics; a value's canonical text is its own canonical text (reading a
//! row back gives what was written).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tramline_core::readmodel::{self, ColumnType, Declaration, RowState, PRESENCE};
use tramline_core::wire::WireFormat;
use tramline_core::Record;
use tramline_fuzz::Framed;
use tramline_sql::readmodel::canonical_value;

fn views() -> &'static [(Declaration, WireFormat)] {
    static VIEWS: OnceLock<Vec<(Declaration, WireFormat)>> = OnceLock::new();
    VIEWS.get_or_init(|| {
        [
            include_str!("../../examples/eventuate-view/tramline.toml"),
            include_str!("view_event.toml"),
        ]
        .into_iter()
        .flat_map(|text| {
            let config = tramline::config::Config::from_toml(text, Vec::new())
                .unwrap_or_else(|problems| panic!("the views do not load: {problems:?}"));
            config.views.into_iter().map(|(name, spec)| {
                let declaration = spec
                    .declaration(&name, &format!("views.{name}"))
                    .unwrap_or_else(|problems| panic!("{name}: {problems:?}"));
                let format = spec.envelope.format().expect("a known envelope");
                (declaration, format)
            })
        })
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let input = Framed::parse(data);
    for (declaration, format) in views() {
        let topic = declaration.events.first().map_or("", |e| e.topic.as_str());
        let envelope = input.with_raw(topic, |raw| format.envelope(raw));
        let record = Record {
            envelope,
            partition: input.partition,
            offset: input.offset,
        };
        let Ok(Some((_key, change))) = declaration.decode(&record) else {
            continue;
        };
        for (column, value) in &change.writes {
            let Some(value) = value else { continue };
            if column == PRESENCE {
                continue;
            }
            let ty = declaration
                .group(&change.group)
                .and_then(|g| g.columns.iter().find(|c| c.name == *column))
                .map_or(ColumnType::Text, |c| c.ty);
            if let Ok(canonical) = canonical_value(ty, value) {
                assert_eq!(
                    canonical_value(ty, &canonical).as_deref(),
                    Ok(canonical.as_str()),
                    "{ty:?}: {value:?} is {canonical:?}"
                );
            }
        }
        let mut row = RowState::new();
        if readmodel::merge(&mut row, &change).is_ok() {
            let _ = readmodel::visible(&row);
        }
    }
});
