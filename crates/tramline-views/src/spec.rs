//! The declaration format: a read model declared in TOML (or anything serde reads), turned
//! into a checked [`Declaration`] with every problem named by its path.
//!
//! ```toml
//! [views.order_status]
//! table = "order_status"
//! key = "order_id"
//! path = "/order-status"
//! database_url = "sqlite://data/order-status.db"
//! listen = "127.0.0.1:8085"
//! envelope = "eventuate"
//!
//! [views.order_status.topics]
//! payment = "com.example.payment.Payment"
//!
//! [[views.order_status.groups]]
//! name = "payment"
//! ordered_by = "position"
//! columns = [
//!   { name = "payment_id", type = "text" },
//!   { name = "payment_status", type = "text" },
//! ]
//!
//! [[views.order_status.events]]
//! topic = "payment"
//! type = "com.example.payment.PaymentApprovedEvent"
//! group = "payment"
//! key = { field = "orderId" }
//! set.payment_status = { value = "APPROVED" }
//! ```
//!
//! docs/VIEWS.md describes every key.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tramline_core::readmodel::{
    Column, ColumnType, Declaration, DeclarationError, Effect, EventMapping, Group, ValueSource,
    VersionSource,
};
use tramline_core::wire::WireFormat;

/// One declared view: its declaration and how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewSpec {
    /// The table (default: the view's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The key column.
    pub key: String,
    /// Where the query API serves it (default `/<name with '-' for '_'>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its database.
    pub database_url: String,
    /// Connections of the consumer's pool (default: 1 on SQLite, 8 on servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
    /// Connections of the query API's pool.
    #[serde(default = "default_query_pool")]
    pub query_pool_size: u32,
    /// The address of its query API, `/metrics`, `/health` and `/ready`.
    pub listen: String,
    /// Concurrent consumer lanes.
    #[serde(default = "default_consumers")]
    pub consumers: usize,
    /// The consumer group (default: the view's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The envelope format of its topics' records on Kafka.
    #[serde(default)]
    pub envelope: EnvelopeSpec,
    /// Short names for topics, used by `events[].topic` (`payment` → the cluster's
    /// `com.example.payment.Payment`), so that a topic can be renamed by a
    /// `TRAMLINE_VIEWS__<VIEW>__TOPICS__<NAME>` variable.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
    /// Its column groups.
    pub groups: Vec<GroupSpec>,
    /// What each (topic, event type) does.
    pub events: Vec<EventSpec>,
}

fn default_query_pool() -> u32 {
    2
}

fn default_consumers() -> usize {
    3
}

/// `envelope = "eventuate"`, or a table with the format's options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvelopeSpec {
    /// `"eventuate"`, `"debezium-outbox"` or `"plain-json"` with their defaults.
    Name(String),
    /// `{ format = "...", … }`.
    Format(WireFormat),
}

impl Default for EnvelopeSpec {
    fn default() -> Self {
        EnvelopeSpec::Name("eventuate".into())
    }
}

impl EnvelopeSpec {
    /// The format it names.
    pub fn format(&self) -> Result<WireFormat, String> {
        match self {
            EnvelopeSpec::Format(f) => Ok(f.clone()),
            EnvelopeSpec::Name(name) => {
                let table = serde_json::json!({ "format": name });
                serde_json::from_value(table).map_err(|_| {
                    format!("unknown envelope {name:?}: eventuate, debezium-outbox or plain-json")
                })
            }
        }
    }
}

/// A column group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Its name.
    pub name: String,
    /// `"position"`, or `{ field = "version" }` / `{ header = "…" }` for a version the
    /// events carry.
    pub ordered_by: OrderSpec,
    /// Its columns.
    pub columns: Vec<ColumnSpec>,
}

/// What orders a group's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OrderSpec {
    /// `"position"`.
    Name(String),
    /// A version the event carries.
    Value(SourceSpec),
}

/// A column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Its name.
    pub name: String,
    /// `text`, `integer`, `decimal(P,S)`, `boolean`, `timestamp` or `json`.
    #[serde(rename = "type")]
    pub ty: String,
}

/// Where a value comes from: exactly one of the fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A payload field, by its dotted path (`orderId`, `address.city`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The record key (`record_key = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_key: Option<bool>,
    /// When the record was created, in milliseconds since the epoch (`record_time = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_time: Option<bool>,
    /// A constant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

/// One (topic, event type) and what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// A name of `topics`, or a topic's name.
    pub topic: String,
    /// The event type (empty: records without one).
    #[serde(rename = "type", default)]
    pub event_type: String,
    /// The group it feeds.
    pub group: String,
    /// Where the view key comes from.
    pub key: SourceSpec,
    /// Column → where its value comes from.
    #[serde(default)]
    pub set: BTreeMap<String, SourceSpec>,
    /// `set` (default), `clear-group` or `delete-row`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

/// A problem of a declaration, at a path such as `views.order_status.events[3].set.amount`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecProblem {
    /// Where.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ViewSpec {
    /// The table's name.
    pub fn table_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.table.as_deref().unwrap_or(name)
    }

    /// The consumer group.
    pub fn group_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.group.as_deref().unwrap_or(name)
    }

    /// The query API's path.
    pub fn route(&self, name: &str) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("/{}", name.replace('_', "-")))
    }

    /// The topic `events[].topic` names: an alias of `topics`, or the name itself.
    pub fn topic<'a>(&'a self, name: &'a str) -> &'a str {
        self.topics.get(name).map(String::as_str).unwrap_or(name)
    }

    /// Every topic the view reads, each once.
    pub fn all_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .events
            .iter()
            .map(|e| self.topic(&e.topic).to_owned())
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The declaration of view `name` (whose keys sit under `at`, e.g. `views.order_status`),
    /// or every problem found, each with its path.
    pub fn declaration(&self, name: &str, at: &str) -> Result<Declaration, Vec<SpecProblem>> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| {
            problems.push(SpecProblem { path, message });
        };
        if let Err(e) = self.envelope.format() {
            problem(format!("{at}.envelope"), e);
        }
        let route = self.route(name);
        if !route.starts_with('/')
            || route.len() < 2
            || route.ends_with('/')
            || route.contains(['{', '}', '?', '#', '*', ':'])
        {
            problem(
                format!("{at}.path"),
                format!("{route:?} is not a path like /order-status"),
            );
        }
        if self.consumers == 0 {
            problem(format!("{at}.consumers"), "must be at least 1".into());
        }
        if self.query_pool_size == 0 {
            problem(format!("{at}.query_pool_size"), "must be at least 1".into());
        }
        if let Err(e) = self.listen.parse::<std::net::SocketAddr>() {
            problem(
                format!("{at}.listen"),
                format!("not an address like 127.0.0.1:8085 ({e})"),
            );
        }
        if let Err(e) = tramline_sql::Dialect::from_url(&self.database_url) {
            problem(format!("{at}.database_url"), e.to_string());
        }
        let mut groups = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            let version = match &g.ordered_by {
                OrderSpec::Name(n) if n == "position" => Some(VersionSource::Position),
                OrderSpec::Name(n) => {
                    problem(
                        format!("{at}.groups[{i}].ordered_by"),
                        format!("{n:?} is not \"position\" or a table such as {{ field = \"version\" }}"),
                    );
                    None
                }
                OrderSpec::Value(s) => match source(s) {
                    Ok(
                        ValueSource::Constant(_) | ValueSource::RecordKey | ValueSource::RecordTime,
                    ) => {
                        problem(
                            format!("{at}.groups[{i}].ordered_by"),
                            "a version comes from a payload field or a header".into(),
                        );
                        None
                    }
                    Ok(s) => Some(VersionSource::Value(s)),
                    Err(e) => {
                        problem(format!("{at}.groups[{i}].ordered_by"), e);
                        None
                    }
                },
            };
            let mut columns = Vec::new();
            for (j, c) in g.columns.iter().enumerate() {
                // A column of a bad type stays, as text, so its events are not refused too.
                let ty = column_type(&c.ty).unwrap_or_else(|e| {
                    problem(format!("{at}.groups[{i}].columns[{j}].type"), e);
                    ColumnType::Text
                });
                columns.push(Column::new(&c.name, ty));
            }
            groups.push(Group {
                name: g.name.clone(),
                columns,
                version: version.unwrap_or(VersionSource::Position),
            });
        }
        let mut events = Vec::new();
        for (i, e) in self.events.iter().enumerate() {
            let key = source(&e.key).unwrap_or_else(|m| {
                problem(format!("{at}.events[{i}].key"), m);
                ValueSource::RecordKey
            });
            let effect = match e.effect.as_deref() {
                None | Some("set") => Effect::Set,
                Some("clear-group") => Effect::ClearGroup,
                Some("delete-row") => Effect::DeleteRow,
                Some(other) => {
                    problem(
                        format!("{at}.events[{i}].effect"),
                        format!("{other:?} is not set, clear-group or delete-row"),
                    );
                    Effect::Set
                }
            };
            let mut mapping = EventMapping::new(self.topic(&e.topic), &e.event_type, &e.group, key)
                .with_effect(effect);
            for (column, s) in &e.set {
                match source(s) {
                    Ok(s) => mapping = mapping.set(column, s),
                    Err(m) => problem(format!("{at}.events[{i}].set.{column}"), m),
                }
            }
            events.push(mapping);
        }
        let declaration = Declaration {
            name: name.to_owned(),
            table: self.table_name(name).to_owned(),
            key: Column::new(&self.key, ColumnType::Text),
            groups,
            events,
        };
        for e in declaration.validate() {
            let found = SpecProblem {
                path: self.locate(&e, at),
                message: e.to_string(),
            };
            // Things of one name (two groups, a column and the key) are located at the first
            // of them: the same problem of each is one problem there.
            if !problems.contains(&found) {
                problems.push(found);
            }
        }
        if problems.is_empty() {
            Ok(declaration)
        } else {
            Err(problems)
        }
    }

    /// The table of view `name` (its keys under `views.<name>`), or every problem found.
    ///
    /// ```
    /// use tramline_views::ViewSpec;
    ///
    /// let spec: ViewSpec = serde_json::from_value(serde_json::json!({
    ///     "key": "order_id",
    ///     "database_url": "sqlite://views.db",
    ///     "listen": "127.0.0.1:8090",
    ///     "groups": [{ "name": "payment", "ordered_by": "position",
    ///                  "columns": [{ "name": "payment_status", "type": "text" }] }],
    ///     "events": [{ "topic": "payments", "type": "PaymentApproved", "group": "payment",
    ///                  "key": { "field": "orderId" },
    ///                  "set": { "payment_status": { "value": "APPROVED" } } }],
    /// }))
    /// .expect("the declaration's shape");
    /// let table = spec.table("order_status").expect("a valid declaration");
    /// assert_eq!(table.declaration().table, "order_status");
    ///
    /// // Every problem, by its path:
    /// let mut wrong = spec.clone();
    /// wrong.events[0].group = "shipping".into();
    /// let problems = wrong.table("order_status").expect_err("an unknown group");
    /// assert!(problems[0].to_string().starts_with("views.order_status.events[0]"));
    /// ```
    pub fn table(&self, name: &str) -> Result<tramline_sql::ReadModelTable, Vec<SpecProblem>> {
        let at = format!("views.{name}");
        let declaration = self.declaration(name, &at)?;
        // The declaration was validated above; a refusal here would be a bug in the check.
        tramline_sql::ReadModelTable::new(declaration).map_err(|found| {
            found
                .into_iter()
                .map(|e| SpecProblem {
                    path: at.clone(),
                    message: e.to_string(),
                })
                .collect()
        })
    }

    /// The path of the key a declaration error is about.
    fn locate(&self, e: &DeclarationError, at: &str) -> String {
        let event = |topic: &str, event_type: &str| {
            self.events
                .iter()
                .rposition(|x| self.topic(&x.topic) == topic && x.event_type == event_type)
        };
        let event_of_type =
            |event_type: &str| self.events.iter().position(|x| x.event_type == event_type);
        let group = |name: &str| self.groups.iter().position(|g| g.name == name);
        // The last declaration of a column (for one declared twice, the second).
        let column = |name: &str| {
            self.groups.iter().enumerate().rev().find_map(|(i, g)| {
                g.columns
                    .iter()
                    .rposition(|c| c.name == name)
                    .map(|j| format!("{at}.groups[{i}].columns[{j}].name"))
            })
        };
        let path = match e {
            DeclarationError::Identifier { what, name } => match *what {
                "table" => Some(format!("{at}.table")),
                "group" => group(name).map(|i| format!("{at}.groups[{i}].name")),
                _ if *name == self.key => Some(format!("{at}.key")),
                _ => column(name),
            },
            DeclarationError::Reserved { column: name } => column(name),
            DeclarationError::Twice { what, name } => match *what {
                "group" => self
                    .groups
                    .iter()
                    .rposition(|g| g.name == *name)
                    .map(|i| format!("{at}.groups[{i}].name")),
                _ => column(name),
            },
            DeclarationError::UnknownGroup {
                topic, event_type, ..
            } => event(topic, event_type).map(|i| format!("{at}.events[{i}].group")),
            DeclarationError::NotInGroup {
                event_type, column, ..
            } => event_of_type(event_type).map(|i| format!("{at}.events[{i}].set.{column}")),
            DeclarationError::MappedTwice { topic, event_type } => {
                event(topic, event_type).map(|i| format!("{at}.events[{i}].type"))
            }
            DeclarationError::PositionsAcrossTopics { group: g, .. } => {
                group(g).map(|i| format!("{at}.groups[{i}].ordered_by"))
            }
            DeclarationError::PartialSnapshot { event_type, .. } => {
                event_of_type(event_type).map(|i| format!("{at}.events[{i}].set"))
            }
            DeclarationError::Unfed { group: g } => group(g).map(|i| format!("{at}.groups[{i}]")),
            _ => None,
        };
        path.unwrap_or_else(|| at.to_owned())
    }
}

/// `text`, `integer`, `decimal(P,S)`, `boolean`, `timestamp` or `json`.
pub fn column_type(text: &str) -> Result<ColumnType, String> {
    let t = text.trim().to_ascii_lowercase();
    let simple = match t.as_str() {
        "text" => Some(ColumnType::Text),
        "integer" => Some(ColumnType::Integer),
        "boolean" => Some(ColumnType::Boolean),
        "timestamp" => Some(ColumnType::Timestamp),
        "json" => Some(ColumnType::Json),
        _ => None,
    };
    if let Some(ty) = simple {
        return Ok(ty);
    }
    let decimal = t
        .strip_prefix("decimal(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|inner| inner.split_once(','))
        .and_then(|(p, s)| Some((p.trim().parse::<u8>().ok()?, s.trim().parse::<u8>().ok()?)));
    match decimal {
        Some((precision, scale)) if (1..=38).contains(&precision) && scale <= precision => {
            Ok(ColumnType::Decimal { precision, scale })
        }
        Some(_) => Err(format!(
            "{text:?}: a decimal has 1 to 38 digits, of which at most all after the point"
        )),
        None => Err(format!(
            "{text:?} is not a column type: text, integer, decimal(P,S), boolean, timestamp or json"
        )),
    }
}

/// The value source a [`SourceSpec`] names.
fn source(s: &SourceSpec) -> Result<ValueSource, String> {
    let given = [
        s.field.is_some(),
        s.header.is_some(),
        s.record_key.is_some(),
        s.record_time.is_some(),
        s.value.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(
            "give exactly one of field = \"path\", header = \"name\", record_key = true, record_time = true, value = …"
                .into(),
        );
    }
    if let Some(field) = &s.field {
        if field.is_empty() || field.split('.').any(str::is_empty) {
            return Err(format!(
                "{field:?} is not a field path like orderId or address.city"
            ));
        }
        return Ok(ValueSource::Field(
            field.split('.').map(str::to_owned).collect(),
        ));
    }
    if let Some(header) = &s.header {
        return Ok(ValueSource::Header(header.clone()));
    }
    if let Some(record_key) = s.record_key {
        return if record_key {
            Ok(ValueSource::RecordKey)
        } else {
            Err("record_key can only be true".into())
        };
    }
    if let Some(record_time) = s.record_time {
        return if record_time {
            Ok(ValueSource::RecordTime)
        } else {
            Err("record_time can only be true".into())
        };
    }
    match &s.value {
        Some(serde_json::Value::String(v)) => Ok(ValueSource::Constant(v.clone())),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
            Ok(ValueSource::Constant(v.to_string()))
        }
        _ => Err("a constant is a string, a number or a boolean".into()),
    }
}

#[cfg(test)]
mod tests;
