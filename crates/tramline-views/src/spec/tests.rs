use super::*;

#[derive(Debug, serde::Deserialize)]
struct File {
    views: BTreeMap<String, ViewSpec>,
}

fn views(text: &str) -> BTreeMap<String, ViewSpec> {
    toml::from_str::<File>(text).expect("parses").views
}

fn example() -> ViewSpec {
    let text = include_str!("../../../../examples/eventuate-view/tramline.toml");
    views(text).remove("order_status").expect("declared")
}

fn problems(spec: &ViewSpec) -> Vec<(String, String)> {
    spec.declaration("v", "views.v")
        .expect_err("refused")
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

#[test]
fn the_eventuate_example_declares_three_positional_groups() {
    let spec = example();
    let d = spec
        .declaration("order_status", "views.order_status")
        .expect("valid");
    assert_eq!(d.table, "order_status");
    assert_eq!(d.key.name, "order_id");
    let groups: Vec<&str> = d.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(groups, ["order", "payment", "delivery"]);
    assert!(d
        .groups
        .iter()
        .all(|g| g.version == VersionSource::Position));
    assert_eq!(d.events.len(), 11);
    let created = d
        .mapping(
            "com.example.order.Order",
            "com.example.order.OrderCreatedEvent",
        )
        .expect("mapped through the topic alias");
    assert_eq!(created.key, ValueSource::Field(vec!["orderId".into()]));
    assert_eq!(
        created.sets["order_status"],
        ValueSource::Constant("PENDING".into())
    );
    let amount = &d.groups[0].columns[4];
    assert_eq!(
        (amount.name.as_str(), amount.ty),
        (
            "amount",
            ColumnType::Decimal {
                precision: 12,
                scale: 2
            }
        )
    );
    // The payment's three events each set both columns: one version for the group.
    assert_eq!(d.version_sets("payment").len(), 1);
    // Only OrderCreatedEvent sets the order's details; status has its own version.
    assert_eq!(d.version_sets("order").len(), 2);
    assert_eq!(
        spec.all_topics(),
        [
            "com.example.delivery.Delivery",
            "com.example.order.Order",
            "com.example.payment.Payment"
        ]
    );
    assert_eq!(spec.route("order_status"), "/order-status");
    assert_eq!(spec.envelope.format(), Ok(WireFormat::Eventuate));
}

#[test]
fn envelopes_are_named_or_given_with_options() {
    let mut spec = example();
    spec.envelope = EnvelopeSpec::Name("debezium-outbox".into());
    assert_eq!(
        spec.envelope.format(),
        Ok(WireFormat::DebeziumOutbox {
            id_header: "id".into(),
            event_type_header: "eventType".into()
        })
    );
    let text = include_str!("../../../../examples/eventuate-view/tramline.toml").replace(
        "envelope = \"eventuate\"",
        "envelope = { format = \"plain-json\", event_type_field = \"type\" }",
    );
    let spec = views(&text).remove("order_status").expect("declared");
    assert_eq!(
        spec.envelope.format(),
        Ok(WireFormat::PlainJson {
            event_type_header: None,
            event_type_field: Some("type".into()),
            id_header: None
        })
    );
    let mut spec = example();
    spec.envelope = EnvelopeSpec::Name("avro".into());
    assert!(problems(&spec)
        .iter()
        .any(|(path, message)| path == "views.v.envelope"
            && message.contains("unknown envelope \"avro\"")));
}

#[test]
fn every_bad_field_is_named_by_its_path() {
    let mut spec = example();
    spec.listen = "localhost".into();
    spec.database_url = "oracle://db".into();
    spec.consumers = 0;
    spec.path = Some("order-status".into());
    spec.groups[0].columns[4].ty = "money".into();
    spec.groups[1].ordered_by = OrderSpec::Name("time".into());
    spec.events[1].key = SourceSpec::default();
    spec.events[2].effect = Some("forget".into());
    spec.events[3].set.insert(
        "payment_status".into(),
        SourceSpec {
            value: Some("X".into()),
            ..SourceSpec::default()
        },
    );
    spec.events[4].group = "shipping".into();
    spec.events[5].set.insert(
        "payment_id".into(),
        SourceSpec {
            field: Some("a..b".into()),
            ..SourceSpec::default()
        },
    );
    let found = problems(&spec);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "views.v.path",
            "views.v.consumers",
            "views.v.listen",
            "views.v.database_url",
            "views.v.groups[0].columns[4].type",
            "views.v.groups[1].ordered_by",
            "views.v.events[1].key",
            "views.v.events[2].effect",
            "views.v.events[5].set.payment_id",
            "views.v.events[3].set.payment_status",
            "views.v.events[4].group",
        ],
        "{found:#?}"
    );
    assert!(found[4].1.contains("\"money\" is not a column type"));
    assert!(found[9].1.contains("not a column of group \"order\""));
}

#[test]
fn unsafe_declarations_are_refused_with_the_reason() {
    // One group fed by two topics cannot be ordered by record positions.
    let mut spec = example();
    spec.events[5].group = "order".into();
    spec.events[5].set = BTreeMap::from([(
        "order_status".into(),
        SourceSpec {
            value: Some("PAID".into()),
            ..SourceSpec::default()
        },
    )]);
    let found = problems(&spec);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "views.v.groups[0].ordered_by");
    assert!(
        found[0]
            .1
            .contains("positions of different topics cannot be compared"),
        "{found:#?}"
    );
    // A delta event in a group ordered by a version field.
    let mut spec = example();
    spec.groups[0].ordered_by = OrderSpec::Value(SourceSpec {
        field: Some("version".into()),
        ..SourceSpec::default()
    });
    let found = problems(&spec);
    assert!(
        found
            .iter()
            .all(|(p, m)| p.starts_with("views.v.events[") && m.contains("a delta event")),
        "{found:#?}"
    );
    // Two mappings of one event, and a column declared twice.
    let mut spec = example();
    spec.events.push(spec.events[0].clone());
    spec.groups[2].columns.push(ColumnSpec {
        name: "payment_id".into(),
        ty: "text".into(),
    });
    let found = problems(&spec);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert!(paths.contains(&"views.v.events[11].type"), "{found:#?}");
    assert!(
        paths.contains(&"views.v.groups[2].columns[2].name"),
        "{found:#?}"
    );
}

#[test]
fn column_types_parse() {
    assert_eq!(column_type("TEXT"), Ok(ColumnType::Text));
    assert_eq!(
        column_type("decimal( 10 , 0 )"),
        Ok(ColumnType::Decimal {
            precision: 10,
            scale: 0
        })
    );
    assert!(column_type("decimal(2,3)").is_err());
    assert!(column_type("decimal(12)").is_err());
    assert_eq!(column_type("json"), Ok(ColumnType::Json));
}

/// Found by the fuzzer (fuzz/fuzz_targets/config_toml.rs, minimised): the problems of things
/// sharing a name (here the key and a column, both "") were located at one path and reported
/// twice, where the configuration check promises every problem once.
#[test]
fn each_problem_is_reported_once() {
    let text = r#"
[views.order_status]
key=""
database_url=""
listen=""
[[views.order_status.groups]]
name=""
ordered_by=""
columns=[{name="",type=""}]
[[views.order_status.events]]
topic=""
group=""
key={}
"#;
    let spec = views(text).remove("order_status").expect("declared");
    let found = problems(&spec);
    assert!(!found.is_empty());
    for (i, p) in found.iter().enumerate() {
        assert!(!found[..i].contains(p), "{p:?} twice in {found:?}");
    }
    let mut twice = spec.clone();
    twice.groups.push(twice.groups[0].clone());
    let found = problems(&twice);
    for (i, p) in found.iter().enumerate() {
        assert!(!found[..i].contains(p), "{p:?} twice in {found:?}");
    }
}

#[test]
fn a_group_can_keep_when_its_source_last_changed() {
    let mut spec = example();
    spec.groups[0].columns.push(ColumnSpec {
        name: "order_changed_at".into(),
        ty: "timestamp".into(),
    });
    let record_time = SourceSpec {
        record_time: Some(true),
        ..SourceSpec::default()
    };
    for event in spec.events.iter_mut().filter(|e| e.group == "order") {
        event
            .set
            .insert("order_changed_at".into(), record_time.clone());
    }
    let d = spec.declaration("v", "views.v").expect("valid");
    let created = d
        .mapping(
            "com.example.order.Order",
            "com.example.order.OrderCreatedEvent",
        )
        .expect("mapped");
    assert_eq!(created.sets["order_changed_at"], ValueSource::RecordTime);

    // Only `true` means it, and a creation time does not order a group.
    let mut spec = example();
    spec.events[0].set.insert(
        "order_status".into(),
        SourceSpec {
            record_time: Some(false),
            ..SourceSpec::default()
        },
    );
    spec.groups[1].ordered_by = OrderSpec::Value(record_time);
    let found = problems(&spec);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "views.v.groups[1].ordered_by",
            "views.v.events[0].set.order_status"
        ],
        "{found:#?}"
    );
    assert!(
        found[1].1.contains("record_time can only be true"),
        "{found:#?}"
    );
}
