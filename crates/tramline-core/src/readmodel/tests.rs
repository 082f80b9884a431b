//! The merge rule against the in-order fold, for random declarations and event streams; and
//! the declarations [`Declaration::validate`] refuses.

use super::*;
use proptest::prelude::*;

fn column(name: &str) -> Column {
    Column::new(name, ColumnType::Text)
}

fn mapping(
    topic: &str,
    event_type: &str,
    group: &str,
    sets: &[&str],
    effect: Effect,
) -> EventMapping {
    let key = ValueSource::Field(vec!["orderId".into()]);
    sets.iter()
        .fold(EventMapping::new(topic, event_type, group, key), |m, c| {
            m.set(*c, ValueSource::Field(vec![c.to_string()]))
        })
        .with_effect(effect)
}

/// Eventuate's payment events, as delta events ordered by position.
fn payments() -> Declaration {
    Declaration {
        name: "order-status".into(),
        table: "order_status".into(),
        key: column("order_id"),
        groups: vec![Group {
            name: "payment".into(),
            columns: vec![
                column("payment_id"),
                column("payment_status"),
                column("reason"),
            ],
            version: VersionSource::Position,
        }],
        events: vec![
            mapping(
                "pay",
                "PaymentCreated",
                "payment",
                &["payment_id", "payment_status"],
                Effect::Set,
            ),
            mapping(
                "pay",
                "PaymentApproved",
                "payment",
                &["payment_status"],
                Effect::Set,
            ),
            mapping(
                "pay",
                "PaymentRejected",
                "payment",
                &["payment_status", "reason"],
                Effect::Set,
            ),
        ],
    }
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect()
}

/// The in-order fold: each event overwrites what it writes, in its group's order.
fn fold_in_order(changes: &[Change]) -> RowState {
    let mut sorted = changes.to_vec();
    sorted.sort_by_key(|c| c.version);
    let mut row = RowState::new();
    for change in &sorted {
        for (column, value) in &change.writes {
            row.insert(
                (change.group.clone(), column.clone()),
                Register {
                    version: change.version,
                    value: value.clone(),
                    origin: change.origin.clone(),
                },
            );
        }
    }
    row
}

/// A payment's PaymentCreated (1, with its id) and PaymentApproved (2, status only).
fn created_then_approved(d: &Declaration) -> (Change, Change) {
    let created = Change::of(
        d,
        &d.events[0],
        1,
        None,
        &values(&[("payment_id", "p-1"), ("payment_status", "PENDING")]),
    );
    let approved = Change::of(
        d,
        &d.events[1],
        2,
        None,
        &values(&[("payment_status", "APPROVED")]),
    );
    (created, approved)
}

#[test]
fn an_older_delta_arriving_late_fills_its_columns_and_changes_nothing_newer() {
    let d = payments();
    assert!(d.validate().is_empty(), "{:?}", d.validate());
    let (created, approved) = created_then_approved(&d);
    let mut row = RowState::new();
    merge(&mut row, &approved).expect("merges");
    merge(&mut row, &created).expect("merges");
    merge(&mut row, &approved).expect("a duplicate merges");
    let shown = visible(&row).expect("present");
    assert_eq!(shown["payment_id"].as_deref(), Some("p-1"));
    assert_eq!(shown["payment_status"].as_deref(), Some("APPROVED"));
}

/// The guard tramline's snapshot view uses, one version per group, is wrong for deltas: the
/// late PaymentCreated is refused whole, so payment_id is lost. This is why every column is
/// its own register.
#[test]
fn one_version_per_group_loses_a_late_deltas_columns() {
    let d = payments();
    let (created, approved) = created_then_approved(&d);
    let mut group_guarded: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut group_version = 0;
    for change in [&approved, &created] {
        if change.version > group_version {
            group_version = change.version;
            group_guarded.extend(change.writes.clone());
        }
    }
    let in_order = visible(&fold_in_order(&[created, approved])).expect("present");
    assert_eq!(in_order["payment_id"].as_deref(), Some("p-1"));
    assert_eq!(
        group_guarded.get("payment_id"),
        None,
        "lost under the group guard"
    );
}

#[test]
fn a_deleted_row_stays_deleted_when_older_events_arrive_and_returns_with_a_newer_one() {
    let mut d = payments();
    d.events.push(mapping(
        "pay",
        "PaymentDeleted",
        "payment",
        &[],
        Effect::DeleteRow,
    ));
    let created = Change::of(&d, &d.events[0], 1, None, &values(&[("payment_id", "p-1")]));
    let deleted = Change::of(&d, &d.events[3], 3, None, &BTreeMap::new());
    let approved = Change::of(
        &d,
        &d.events[1],
        2,
        None,
        &values(&[("payment_status", "APPROVED")]),
    );
    let mut row = RowState::new();
    for change in [&deleted, &approved, &created] {
        merge(&mut row, change).expect("merges");
    }
    assert_eq!(visible(&row), None, "older events do not undo the deletion");
    let again = Change::of(
        &d,
        &d.events[1],
        4,
        None,
        &values(&[("payment_status", "APPROVED")]),
    );
    merge(&mut row, &again).expect("merges");
    let shown = visible(&row).expect("a newer event brings the row back");
    assert_eq!(shown["payment_id"], None, "cleared by the deletion");
    assert_eq!(shown["payment_status"].as_deref(), Some("APPROVED"));
}

#[test]
fn positions_from_another_partition_or_aggregate_are_refused() {
    let d = payments();
    let origin = |partition, key: &str| Origin {
        topic: "pay".into(),
        partition,
        record_key: key.into(),
    };
    let first = Change::of(
        &d,
        &d.events[0],
        10,
        Some(origin(1, "p-1")),
        &values(&[("payment_id", "p-1")]),
    );
    let mut row = RowState::new();
    merge(&mut row, &first).expect("merges");
    for other in [origin(2, "p-1"), origin(1, "p-2")] {
        let change = Change::of(
            &d,
            &d.events[1],
            3,
            Some(other),
            &values(&[("payment_status", "APPROVED")]),
        );
        let err = merge(&mut row, &change).expect_err("refused");
        assert!(
            err.to_string()
                .contains("comparable only within one partition"),
            "{err}"
        );
    }
}

#[test]
fn declarations_that_cannot_be_made_safe_are_refused_with_a_reason() {
    let mut d = payments();
    d.events.push(mapping(
        "pay-2",
        "PaymentRefunded",
        "payment",
        &["payment_status"],
        Effect::Set,
    ));
    d.events.push(mapping(
        "pay",
        "PaymentApproved",
        "payment",
        &["payment_status"],
        Effect::Set,
    ));
    d.events
        .push(mapping("pay", "Ghost", "nowhere", &[], Effect::Set));
    d.events.push(mapping(
        "pay",
        "Odd",
        "payment",
        &["order_status"],
        Effect::Set,
    ));
    d.groups.push(Group {
        name: "order".into(),
        columns: vec![
            column("order_status"),
            column("amount"),
            column("payment_id"),
        ],
        version: VersionSource::Value(ValueSource::Field(vec!["version".into()])),
    });
    d.events.push(mapping(
        "ord",
        "OrderApproved",
        "order",
        &["order_status"],
        Effect::Set,
    ));
    d.table = "order status".into();
    let problems: Vec<String> = d.validate().iter().map(ToString::to_string).collect();
    for expected in [
        "table \"order status\" is not a plain identifier",
        "column \"payment_id\" is declared twice",
        "event \"PaymentApproved\" on \"pay\" is mapped twice",
        "feeds group \"nowhere\", which is not declared",
        "sets \"order_status\", which is not a column of group \"payment\"",
        "does not set amount, payment_id, yet the group is ordered by a version field",
        "group \"payment\" is ordered by the records' positions but is fed by topics pay, pay-2",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected:?} not in {problems:#?}"
        );
    }
}

#[test]
fn columns_written_together_share_a_version() {
    let d = payments();
    assert_eq!(
        d.version_sets("payment"),
        [
            vec!["payment_id".to_owned()],
            vec!["payment_status".to_owned()],
            vec!["reason".to_owned()],
        ]
    );
    let mut snapshot = payments();
    snapshot.events = vec![mapping(
        "pay",
        "PaymentChanged",
        "payment",
        &["payment_id", "payment_status", "reason"],
        Effect::Set,
    )];
    assert_eq!(
        snapshot.version_sets("payment").len(),
        1,
        "one version column"
    );
}

/// Eventuate Tram's payment events and a snapshot order group, as records arrive.
#[test]
fn records_decode_into_changes_by_their_mapping() {
    use crate::envelope::EVENT_TYPE;
    use crate::{Envelope, Record};
    let mut d = payments();
    d.events[1] = EventMapping::new(
        "pay",
        "PaymentApproved",
        "payment",
        ValueSource::Field(vec!["orderId".into()]),
    )
    .set("payment_id", ValueSource::Field(vec!["paymentId".into()]))
    .set("payment_status", ValueSource::Constant("APPROVED".into()));
    d.groups.push(Group {
        name: "order".into(),
        columns: vec![Column::new(
            "amount",
            ColumnType::Decimal {
                precision: 12,
                scale: 2,
            },
        )],
        version: VersionSource::Value(ValueSource::Field(vec!["version".into()])),
    });
    d.events.push(
        EventMapping::new("ord", "OrderChanged", "order", ValueSource::RecordKey)
            .set("amount", ValueSource::Field(vec!["amount".into()])),
    );
    assert!(d.validate().is_empty(), "{:?}", d.validate());
    let record = |topic: &str, event_type: &str, payload: &str, offset| Record {
        envelope: Envelope::new(topic, "p-1", payload.into()).with_header(EVENT_TYPE, event_type),
        partition: 3,
        offset,
    };

    let approved = record(
        "pay",
        "PaymentApproved",
        r#"{"paymentId":"p-1","orderId":"o-9"}"#,
        41,
    );
    let (key, change) = d.decode(&approved).expect("decodes").expect("mapped");
    assert_eq!(key, "o-9");
    assert_eq!(change.version, 41, "the record's offset");
    assert_eq!(
        change.origin,
        Some(Origin {
            topic: "pay".into(),
            partition: 3,
            record_key: "p-1".into()
        })
    );
    assert_eq!(change.writes["payment_status"].as_deref(), Some("APPROVED"));
    assert_eq!(change.writes["payment_id"].as_deref(), Some("p-1"));

    let order = record("ord", "OrderChanged", r#"{"amount":12.5,"version":7}"#, 0);
    let (key, change) = d.decode(&order).expect("decodes").expect("mapped");
    assert_eq!(
        (key.as_str(), change.version, change.origin),
        ("p-1", 7, None)
    );
    assert_eq!(change.writes["amount"].as_deref(), Some("12.5"));

    let other = record("pay", "PaymentRefunded", "{}", 1);
    assert!(
        d.decode(&other).expect("decodes").is_none(),
        "not this view's"
    );
    let no_key = record("pay", "PaymentApproved", r#"{"paymentId":"p-1"}"#, 2);
    let err = d.decode(&no_key).expect_err("no key");
    assert_eq!(
        err.to_string(),
        "\"PaymentApproved\" has no view key at payload field orderId"
    );
    let no_version = record("ord", "OrderChanged", r#"{"amount":1}"#, 2);
    let err = d.decode(&no_version).expect_err("no version");
    assert_eq!(
        err.to_string(),
        "\"OrderChanged\" has no whole-number version at payload field version"
    );
    let garbage = record("ord", "OrderChanged", "not json", 2);
    assert!(matches!(
        d.decode(&garbage),
        Err(DecodeError::NotJson { .. })
    ));
}

/// A JSON column takes the field's JSON as it is, a string included; a record the transport
/// could not read in its envelope format is refused, not ignored.
#[test]
fn a_record_time_is_the_records_creation_time_every_time_it_is_read() {
    use crate::{Envelope, Record};
    let mut envelope = Envelope::new("payments", "p-1", "{}".into());
    envelope.created_at_ms = 1_780_000_000_123;
    let record = Record {
        envelope,
        partition: 0,
        offset: 7,
    };
    let payload = serde_json::json!({});
    for _ in 0..2 {
        let read = ValueSource::RecordTime.read(&record, &payload);
        assert_eq!(read.as_deref(), Some("1780000000123"));
    }
    assert_eq!(
        ValueSource::RecordTime
            .read_json(&record, &payload)
            .as_deref(),
        Some("\"1780000000123\"")
    );
}

#[test]
fn json_columns_keep_the_fields_json_and_undecodable_records_are_refused() {
    use crate::envelope::EVENT_TYPE;
    use crate::{Envelope, Record};
    let d = Declaration {
        name: "notes".into(),
        table: "notes".into(),
        key: column("id"),
        groups: vec![Group {
            name: "note".into(),
            columns: vec![
                Column::new("body", ColumnType::Json),
                Column::new("author", ColumnType::Json),
            ],
            version: VersionSource::Position,
        }],
        events: vec![
            EventMapping::new("notes", "Noted", "note", ValueSource::RecordKey)
                .set("body", ValueSource::Field(vec!["body".into()]))
                .set("author", ValueSource::Header("author".into())),
        ],
    };
    assert!(d.validate().is_empty(), "{:?}", d.validate());
    let record = |payload: &str| Record {
        envelope: Envelope::new("notes", "n-1", payload.into())
            .with_header(EVENT_TYPE, "Noted")
            .with_header("author", "Ada"),
        partition: 0,
        offset: 1,
    };
    for (payload, body) in [
        (r#"{"body":"hello"}"#, Some(r#""hello""#)),
        (
            r#"{"body":{"b":1,"a":[true]}}"#,
            Some(r#"{"a":[true],"b":1}"#),
        ),
        (r#"{"body":null}"#, None),
    ] {
        let (_, change) = d
            .decode(&record(payload))
            .expect("decodes")
            .expect("mapped");
        assert_eq!(change.writes["body"].as_deref(), body, "{payload}");
        assert_eq!(change.writes["author"].as_deref(), Some(r#""Ada""#));
    }
    let mut marked = record("{}");
    marked.envelope.headers.insert(
        crate::wire::DECODE_ERROR.into(),
        "the record value is not JSON".into(),
    );
    let err = d.decode(&marked).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the record is not in its topic's envelope format: the record value is not JSON"
    );
}

/// A random declaration: 1–3 groups of 1–4 columns, each ordered by a version field (its
/// events are snapshots, or clear the group or delete the row) or by position (deltas that
/// set random subsets, clearing or deleting now and then).
fn declaration() -> impl Strategy<Value = Declaration> {
    let group = (
        1usize..=4,
        any::<bool>(),
        prop::collection::vec((any::<u8>(), 0u8..10), 1..5),
    );
    prop::collection::vec(group, 1..=3).prop_map(|groups| {
        let mut d = Declaration {
            name: "v".into(),
            table: "v".into(),
            key: column("k"),
            groups: Vec::new(),
            events: Vec::new(),
        };
        for (g, (width, positional, events)) in groups.into_iter().enumerate() {
            let name = format!("g{g}");
            let columns: Vec<String> = (0..width).map(|c| format!("{name}_c{c}")).collect();
            d.groups.push(Group {
                name: name.clone(),
                columns: columns.iter().map(|c| column(c)).collect(),
                version: if positional {
                    VersionSource::Position
                } else {
                    VersionSource::Value(ValueSource::Field(vec!["version".into()]))
                },
            });
            for (e, (mask, effect)) in events.into_iter().enumerate() {
                let effect = match effect {
                    0 => Effect::ClearGroup,
                    1 => Effect::DeleteRow,
                    _ => Effect::Set,
                };
                let sets: Vec<&str> = columns
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !positional || effect != Effect::Set || mask & (1 << i) != 0)
                    .map(|(_, c)| c.as_str())
                    .collect();
                let sets = if sets.is_empty() {
                    vec![columns[0].as_str()]
                } else {
                    sets
                };
                let sets = if effect == Effect::Set || positional {
                    sets
                } else {
                    Vec::new()
                };
                d.events.push(mapping(
                    &name,
                    &format!("{name}_e{e}"),
                    &name,
                    &sets,
                    effect,
                ));
            }
        }
        d
    })
}

/// A declaration and, per group, a stream of its events in their own order (version 1, 2, …),
/// each with random values.
fn declaration_and_stream() -> impl Strategy<Value = (Declaration, Vec<Change>)> {
    declaration()
        .prop_flat_map(|d| {
            let n = d.events.len();
            let stream = prop::collection::vec((0..n, 0u8..4, any::<bool>()), 1..40);
            (Just(d), stream)
        })
        .prop_map(|(d, picks)| {
            let mut next: BTreeMap<String, i64> = BTreeMap::new();
            let changes = picks
                .into_iter()
                .map(|(e, value, null)| {
                    let mapping = &d.events[e];
                    let version = next.entry(mapping.group.clone()).or_insert(0);
                    *version += 1;
                    let values = mapping
                        .sets
                        .keys()
                        .map(|c| (c.clone(), (!null).then(|| format!("{c}={value}"))))
                        .collect();
                    Change::of(&d, mapping, *version, None, &values)
                })
                .collect();
            (d, changes)
        })
}

proptest! {
    /// Any interleaving, duplication and redelivery of the events ends where applying each
    /// group's events in their order ends.
    #[test]
    fn any_delivery_order_ends_at_the_in_order_fold(
        (d, changes) in declaration_and_stream(),
        seed in any::<u64>(),
        duplicated in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        prop_assert!(d.validate().is_empty(), "{:?}", d.validate());
        let mut delivered = changes.clone();
        delivered.extend(duplicated.iter().map(|i| i.get(&changes).clone()));
        // A deterministic shuffle from the seed (Fisher–Yates on a xorshift).
        let mut state = seed | 1;
        for i in (1..delivered.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            delivered.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let mut row = RowState::new();
        for change in &delivered {
            merge(&mut row, change).expect("one origin");
        }
        prop_assert_eq!(visible(&row), visible(&fold_in_order(&changes)));
    }
}
