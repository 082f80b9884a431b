//! Declared read models: what a denormalized view is made of, and the merge rule that keeps it
//! exact under duplicates, redeliveries, reordering and concurrent consumers.
//!
//! A view has a key and *column groups*, each fed by one source (one aggregate's events). An
//! event of a group sets some of its columns — all of them (a *snapshot* event, which carries
//! the aggregate's version) or only some (a *delta* event, such as Eventuate Tram's
//! `PaymentApprovedEvent {"paymentId", "orderId"}`, whose order is its position in the
//! transport's partition). The one decision to know: **every column is a last-writer-wins
//! register ordered by the version of the event that set it**. Applying an event sets a column
//! only if the event is newer than the one that last set that column, so any interleaving,
//! duplication or batching of a group's events ends where applying them in order ends. Columns
//! that every event of the group sets together share one version ([`Declaration::version_sets`]),
//! which for a snapshot group is the single version column tramline's own view has always
//! had. Clearing a group sets its columns to NULL *at the clearing event's version*, and
//! deleting a row also sets the group's hidden presence column, so an older event arriving
//! later cannot undo either.
//!
//! A transport position is a version only while one partition orders every event of a group
//! for one view key: the group's events for a key come from one aggregate (one record key) on
//! one topic, and the topic's partition count does not change. [`Declaration::validate`]
//! refuses a positional group fed by more than one topic; the remaining conditions are checked
//! as events arrive ([`Register::origin`]): an event from another partition or record key than
//! the one that first fed the group for that key is a [`MergeError::OtherOrigin`], never a
//! silent overwrite.
//!
//! This module is the rule itself, with no I/O; the SQL stores write it as guarded upserts.

use crate::Record;
use std::collections::{BTreeMap, BTreeSet};

/// The type of a view column, mapped to each dialect's column type by the stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ColumnType {
    /// Text.
    Text,
    /// A 64-bit integer.
    Integer,
    /// An exact decimal with `scale` digits after the point (money: 2).
    Decimal {
        /// Digits in all.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// True or false.
    Boolean,
    /// A point in time, in UTC.
    Timestamp,
    /// A JSON document.
    Json,
}

/// Where an event's value of a column comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ValueSource {
    /// A field of the JSON payload, by its path (`["orderId"]`, `["address", "city"]`).
    Field(Vec<String>),
    /// A message header (`event-aggregate-id`, `PARTITION_ID`, …).
    Header(String),
    /// The record's key.
    RecordKey,
    /// A constant: what a delta event's type means (`PaymentApprovedEvent` → `APPROVED`).
    Constant(String),
    /// When the record was created (its outbox row written), in whole milliseconds since the
    /// Unix epoch: what a timestamp or integer column takes as "when this source last
    /// changed". The same on every redelivery, so a rebuilt view holds the same value.
    RecordTime,
}

/// What gives a group's events their order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum VersionSource {
    /// A whole number the event carries (a snapshot's aggregate version).
    Value(ValueSource),
    /// The record's position within its partition (offset): see the module's rules.
    Position,
}

/// A column of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name in the table.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
}

impl Column {
    /// A column `name` of type `ty`.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        Column {
            name: name.into(),
            ty,
        }
    }
}

/// Columns of the view fed by one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// A short name (`order`, `payment`), used for the group's hidden columns.
    pub name: String,
    /// Its columns.
    pub columns: Vec<Column>,
    /// What orders its events.
    pub version: VersionSource,
}

/// What one kind of event does to the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMapping {
    /// The topic it arrives on.
    pub topic: String,
    /// Its event type (the `event-type` header).
    pub event_type: String,
    /// The group it feeds.
    pub group: String,
    /// Where the view key comes from.
    pub key: ValueSource,
    /// Column → where its value comes from. An event that sets every column of its group is
    /// a snapshot; one that sets some is a delta.
    pub sets: BTreeMap<String, ValueSource>,
    /// What else it does to the row.
    pub effect: Effect,
}

/// What an event does beyond setting columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Effect {
    /// Nothing more.
    #[default]
    Set,
    /// Sets every column of its group it does not name to NULL.
    ClearGroup,
    /// Removes the row from view until a newer event of the same group arrives (as
    /// [`Effect::ClearGroup`], and hides the row).
    DeleteRow,
}

/// A read model, declared once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// The view's name (`order-status`).
    pub name: String,
    /// Its table.
    pub table: String,
    /// The key column.
    pub key: Column,
    /// Its column groups.
    pub groups: Vec<Group>,
    /// Every event it reacts to.
    pub events: Vec<EventMapping>,
}

/// Why a declaration cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclarationError {
    /// A name is empty or not a plain SQL identifier.
    #[error("{what} {name:?} is not a plain identifier (ASCII letters, digits and '_', not starting with a digit)")]
    Identifier {
        /// What the name is of.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// Two columns (or groups) share a name.
    #[error("{what} {name:?} is declared twice")]
    Twice {
        /// Column or group.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// An event names a group that is not declared.
    #[error("event {event_type:?} on {topic:?} feeds group {group:?}, which is not declared")]
    UnknownGroup {
        /// The event's topic.
        topic: String,
        /// The event's type.
        event_type: String,
        /// The group it names.
        group: String,
    },
    /// An event sets a column outside its group.
    #[error("event {event_type:?} sets {column:?}, which is not a column of group {group:?}")]
    NotInGroup {
        /// The event's type.
        event_type: String,
        /// The column.
        column: String,
        /// The event's group.
        group: String,
    },
    /// Two mappings for one (topic, event type).
    #[error("event {event_type:?} on {topic:?} is mapped twice")]
    MappedTwice {
        /// The topic.
        topic: String,
        /// The event type.
        event_type: String,
    },
    /// A group ordered by transport position is fed by several topics.
    #[error("group {group:?} is ordered by the records' positions but is fed by topics {topics}: positions of different topics cannot be compared, so its events need a version field")]
    PositionsAcrossTopics {
        /// The group.
        group: String,
        /// Its topics, comma-separated.
        topics: String,
    },
    /// A group ordered by a snapshot version has an event that does not set every column.
    #[error("event {event_type:?} of group {group:?} does not set {missing}, yet the group is ordered by a version field; a delta event must be ordered by the records' positions, or set every column")]
    PartialSnapshot {
        /// The event type.
        event_type: String,
        /// The group.
        group: String,
        /// The columns it leaves out, comma-separated.
        missing: String,
    },
    /// A column's name is one the stores use for a group's bookkeeping.
    #[error("column {column:?} has a name the table keeps for bookkeeping (<group>_version, and every name with \"__\"); rename it")]
    Reserved {
        /// The column.
        column: String,
    },
    /// A group no event feeds.
    #[error("group {group:?} is fed by no event")]
    Unfed {
        /// The group.
        group: String,
    },
}

fn identifier(what: &'static str, name: &str) -> Result<(), DeclarationError> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DeclarationError::Identifier {
            what,
            name: name.to_owned(),
        })
    }
}

impl Declaration {
    /// Every reason the declaration cannot be made safe, each in a sentence.
    pub fn validate(&self) -> Vec<DeclarationError> {
        let mut problems = Vec::new();
        let mut check = |r: Result<(), DeclarationError>| {
            if let Err(e) = r {
                problems.push(e);
            }
        };
        check(identifier("table", &self.table));
        check(identifier("column", &self.key.name));
        let mut columns = BTreeSet::from([self.key.name.as_str()]);
        let mut groups = BTreeSet::new();
        for group in &self.groups {
            check(identifier("group", &group.name));
            if !groups.insert(group.name.as_str()) {
                check(Err(DeclarationError::Twice {
                    what: "group",
                    name: group.name.clone(),
                }));
            }
            for column in &group.columns {
                check(identifier("column", &column.name));
                let bookkeeping = column.name.contains("__")
                    || self
                        .groups
                        .iter()
                        .any(|g| column.name == format!("{}_version", g.name));
                if bookkeeping {
                    check(Err(DeclarationError::Reserved {
                        column: column.name.clone(),
                    }));
                }
                if !columns.insert(column.name.as_str()) {
                    check(Err(DeclarationError::Twice {
                        what: "column",
                        name: column.name.clone(),
                    }));
                }
            }
        }
        let mut mapped = BTreeSet::new();
        for event in &self.events {
            if !mapped.insert((event.topic.as_str(), event.event_type.as_str())) {
                check(Err(DeclarationError::MappedTwice {
                    topic: event.topic.clone(),
                    event_type: event.event_type.clone(),
                }));
            }
            let Some(group) = self.group(&event.group) else {
                check(Err(DeclarationError::UnknownGroup {
                    topic: event.topic.clone(),
                    event_type: event.event_type.clone(),
                    group: event.group.clone(),
                }));
                continue;
            };
            for column in event.sets.keys() {
                if !group.columns.iter().any(|c| &c.name == column) {
                    check(Err(DeclarationError::NotInGroup {
                        event_type: event.event_type.clone(),
                        column: column.clone(),
                        group: group.name.clone(),
                    }));
                }
            }
            if matches!(group.version, VersionSource::Value(_)) && event.effect == Effect::Set {
                let missing: Vec<&str> = group
                    .columns
                    .iter()
                    .filter(|c| !event.sets.contains_key(&c.name))
                    .map(|c| c.name.as_str())
                    .collect();
                if !missing.is_empty() {
                    check(Err(DeclarationError::PartialSnapshot {
                        event_type: event.event_type.clone(),
                        group: group.name.clone(),
                        missing: missing.join(", "),
                    }));
                }
            }
        }
        for group in &self.groups {
            let topics: BTreeSet<&str> = self
                .events
                .iter()
                .filter(|e| e.group == group.name)
                .map(|e| e.topic.as_str())
                .collect();
            if topics.is_empty() {
                check(Err(DeclarationError::Unfed {
                    group: group.name.clone(),
                }));
            }
            if group.version == VersionSource::Position && topics.len() > 1 {
                check(Err(DeclarationError::PositionsAcrossTopics {
                    group: group.name.clone(),
                    topics: topics.into_iter().collect::<Vec<_>>().join(", "),
                }));
            }
        }
        problems
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The mapping of an event, by topic and event type.
    pub fn mapping(&self, topic: &str, event_type: &str) -> Option<&EventMapping> {
        self.events
            .iter()
            .find(|e| e.topic == topic && e.event_type == event_type)
    }

    /// The group's columns partitioned by which events write them: columns written by exactly
    /// the same events always carry the same version, so each set needs one version column.
    /// A snapshot group is one set; a delta group has a set per distinct combination. Every
    /// group also has its hidden presence register ([`PRESENCE`]), written by every event.
    pub fn version_sets(&self, group: &str) -> Vec<Vec<String>> {
        let Some(g) = self.group(group) else {
            return Vec::new();
        };
        let mut by_writers: BTreeMap<Vec<usize>, Vec<String>> = BTreeMap::new();
        for column in &g.columns {
            let writers: Vec<usize> = self
                .events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.group == group && e.writes(&column.name))
                .map(|(i, _)| i)
                .collect();
            by_writers
                .entry(writers)
                .or_default()
                .push(column.name.clone());
        }
        by_writers.into_values().collect()
    }
}

impl EventMapping {
    /// The event `event_type` on `topic`, feeding `group`, its view key from `key`; it sets
    /// nothing until told ([`EventMapping::set`]).
    pub fn new(
        topic: impl Into<String>,
        event_type: impl Into<String>,
        group: impl Into<String>,
        key: ValueSource,
    ) -> Self {
        EventMapping {
            topic: topic.into(),
            event_type: event_type.into(),
            group: group.into(),
            key,
            sets: BTreeMap::new(),
            effect: Effect::Set,
        }
    }

    /// Sets `column` from `source`, builder style.
    pub fn set(mut self, column: impl Into<String>, source: ValueSource) -> Self {
        self.sets.insert(column.into(), source);
        self
    }

    /// Gives the event `effect` besides the columns it sets, builder style.
    pub fn with_effect(mut self, effect: Effect) -> Self {
        self.effect = effect;
        self
    }

    /// Whether applying this event writes `column` (sets it, or clears it).
    pub fn writes(&self, column: &str) -> bool {
        self.effect != Effect::Set || self.sets.contains_key(column)
    }
}

/// The hidden register of every group that says whether the group's newest event deleted the
/// row: a row is shown unless some group's presence register holds `false`.
pub const PRESENCE: &str = "__present";

/// One event of a group, decoded: the values it writes and the version that orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The group it writes.
    pub group: String,
    /// Its version (a snapshot's version, or the record's offset).
    pub version: i64,
    /// Where a positional version comes from (`None` for a snapshot version).
    pub origin: Option<Origin>,
    /// Column → value (`None` writes NULL); [`PRESENCE`] included.
    pub writes: BTreeMap<String, Option<String>>,
}

/// Where an event with a positional version was read: positions are comparable only within
/// one (topic, partition) and, for one view key, one aggregate (record key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record key (the aggregate id).
    pub record_key: String,
}

/// One column's state: the value and the version of the event that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The version of the newest event that wrote the column.
    pub version: i64,
    /// Its value.
    pub value: Option<String>,
    /// For positional versions, where the group's events for this key come from.
    pub origin: Option<Origin>,
}

/// Why a change cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// A positional change from another partition or aggregate than the group's first.
    #[error("group {group:?} of this key was fed from {first:?} and now from {now:?}: record positions are comparable only within one partition and one aggregate (did the partition count change, or do two aggregates feed one group?)")]
    OtherOrigin {
        /// The group.
        group: String,
        /// Where its events came from so far.
        first: Box<Origin>,
        /// Where this one comes from.
        now: Box<Origin>,
    },
}

/// A view row as registers: `(group, column)` → register.
pub type RowState = BTreeMap<(String, String), Register>;

impl Change {
    /// The change `mapping`'s event makes, given the values it carries for the columns it
    /// sets (`values`, already read from its payload or headers): what it sets, the NULLs
    /// its effect writes, and the group's presence register.
    pub fn of(
        declaration: &Declaration,
        mapping: &EventMapping,
        version: i64,
        origin: Option<Origin>,
        values: &BTreeMap<String, Option<String>>,
    ) -> Change {
        let mut writes: BTreeMap<String, Option<String>> = mapping
            .sets
            .keys()
            .map(|c| (c.clone(), values.get(c).cloned().flatten()))
            .collect();
        let columns = declaration
            .group(&mapping.group)
            .map(|g| g.columns.as_slice())
            .unwrap_or_default();
        match mapping.effect {
            Effect::Set => {}
            // The columns it does not name become NULL.
            Effect::ClearGroup => {
                for column in columns {
                    writes.entry(column.name.clone()).or_insert(None);
                }
            }
            // Every column becomes NULL, the named ones too.
            Effect::DeleteRow => {
                for column in columns {
                    writes.insert(column.name.clone(), None);
                }
            }
        }
        let present = (mapping.effect != Effect::DeleteRow).then(|| "1".to_owned());
        writes.insert(PRESENCE.to_owned(), present);
        Change {
            group: mapping.group.clone(),
            version,
            origin,
            writes,
        }
    }
}

/// Why a record cannot be read as a change of the view (the runtime parks it as poison).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is not JSON.
    #[error("the payload of {event_type:?} is not JSON")]
    NotJson {
        /// The event type.
        event_type: String,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The event carries no view key.
    #[error("{event_type:?} has no view key at {at}")]
    NoKey {
        /// The event type.
        event_type: String,
        /// Where the key was looked for.
        at: String,
    },
    /// The transport could not read the record in its topic's envelope format.
    #[error("the record is not in its topic's envelope format: {0}")]
    Envelope(String),
    /// The version field is missing or not a whole number.
    #[error("{event_type:?} has no whole-number version at {at}")]
    NoVersion {
        /// The event type.
        event_type: String,
        /// Where the version was looked for.
        at: String,
    },
}

impl ValueSource {
    /// Where this source looks, for messages.
    pub fn describe(&self) -> String {
        match self {
            ValueSource::Field(path) => format!("payload field {}", path.join(".")),
            ValueSource::Header(name) => format!("header {name}"),
            ValueSource::RecordKey => "the record key".into(),
            ValueSource::Constant(c) => format!("constant {c:?}"),
            ValueSource::RecordTime => "the record's creation time".into(),
        }
    }

    /// The value this source gives for `record` (whose payload is `payload`), as text:
    /// strings as they are, numbers and booleans as JSON writes them, objects and arrays as
    /// JSON; `None` for a missing field or a JSON null.
    pub fn read(&self, record: &Record, payload: &serde_json::Value) -> Option<String> {
        match self {
            ValueSource::Field(path) => {
                let found = path.iter().try_fold(payload, |v, field| v.get(field))?;
                match found {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            }
            ValueSource::Header(name) => record.envelope.header(name).map(str::to_owned),
            ValueSource::RecordKey => Some(record.envelope.key.clone()),
            ValueSource::Constant(c) => Some(c.clone()),
            ValueSource::RecordTime => Some(record.envelope.created_at_ms.to_string()),
        }
    }
}

impl ValueSource {
    /// The value as JSON text, for a JSON column: a payload field's JSON as it is (a string
    /// stays a JSON string), any other source's text as a JSON string; `None` for a missing
    /// field or a JSON null.
    pub fn read_json(&self, record: &Record, payload: &serde_json::Value) -> Option<String> {
        match self {
            ValueSource::Field(path) => path
                .iter()
                .try_fold(payload, |v, field| v.get(field))
                .filter(|v| !v.is_null())
                .map(ToString::to_string),
            other => other
                .read(record, payload)
                .map(|text| serde_json::Value::String(text).to_string()),
        }
    }
}

impl Declaration {
    /// The view key and change `record` makes, or `None` when the view does not react to its
    /// (topic, event type).
    pub fn decode(&self, record: &Record) -> Result<Option<(String, Change)>, DecodeError> {
        let envelope = &record.envelope;
        if let Some(why) = envelope.header(crate::wire::DECODE_ERROR) {
            return Err(DecodeError::Envelope(why.to_owned()));
        }
        let event_type = envelope.event_type().unwrap_or_default();
        let Some(mapping) = self.mapping(&envelope.topic, event_type) else {
            return Ok(None);
        };
        let Some(group) = self.group(&mapping.group) else {
            return Ok(None);
        };
        let payload: serde_json::Value =
            serde_json::from_str(&envelope.payload).map_err(|source| DecodeError::NotJson {
                event_type: event_type.to_owned(),
                source,
            })?;
        let key = mapping
            .key
            .read(record, &payload)
            .ok_or_else(|| DecodeError::NoKey {
                event_type: event_type.to_owned(),
                at: mapping.key.describe(),
            })?;
        let (version, origin) = match &group.version {
            VersionSource::Value(source) => {
                let version = source
                    .read(record, &payload)
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| DecodeError::NoVersion {
                        event_type: event_type.to_owned(),
                        at: source.describe(),
                    })?;
                (version, None)
            }
            VersionSource::Position => (
                record.offset,
                Some(Origin {
                    topic: envelope.topic.clone(),
                    partition: record.partition,
                    record_key: envelope.key.clone(),
                }),
            ),
        };
        let is_json = |column: &str| {
            group
                .columns
                .iter()
                .any(|c| c.name == column && c.ty == ColumnType::Json)
        };
        let values = mapping
            .sets
            .iter()
            .map(|(column, source)| {
                let value = if is_json(column) {
                    source.read_json(record, &payload)
                } else {
                    source.read(record, &payload)
                };
                (column.clone(), value)
            })
            .collect();
        Ok(Some((
            key,
            Change::of(self, mapping, version, origin, &values),
        )))
    }
}

/// Merges `change` into `row`: every column it writes takes its value if the change is newer
/// than the column's register. Commutative, associative and idempotent over one group's
/// changes, so any order, duplication or batching ends in the same row.
pub fn merge(row: &mut RowState, change: &Change) -> Result<(), MergeError> {
    if let Some(now) = &change.origin {
        let first = row
            .iter()
            .find(|((g, _), _)| *g == change.group)
            .and_then(|(_, r)| r.origin.as_ref());
        if let Some(first) = first.filter(|first| *first != now) {
            return Err(MergeError::OtherOrigin {
                group: change.group.clone(),
                first: Box::new(first.clone()),
                now: Box::new(now.clone()),
            });
        }
    }
    for (column, value) in &change.writes {
        let key = (change.group.clone(), column.clone());
        let newer = row.get(&key).is_none_or(|r| r.version < change.version);
        if newer {
            row.insert(
                key,
                Register {
                    version: change.version,
                    value: value.clone(),
                    origin: change.origin.clone(),
                },
            );
        }
    }
    Ok(())
}

/// The row as a reader sees it: column → value, or `None` when a group deleted it.
pub fn visible(row: &RowState) -> Option<BTreeMap<String, Option<String>>> {
    let deleted = row
        .iter()
        .any(|((_, c), r)| c == PRESENCE && r.value.is_none());
    (!deleted).then(|| {
        row.iter()
            .filter(|((_, c), _)| c != PRESENCE)
            .map(|((_, c), r)| (c.clone(), r.value.clone()))
            .collect()
    })
}

#[cfg(test)]
mod tests;
