//! How tramline's topics are named on a broker.
//!
//! Inside tramline a topic has a *logical* name (`order-events`); on a Kafka cluster it has a
//! *cluster* name: the logical name behind a prefix (`bars.order-events`), or whatever a
//! rename says (`com.example.order.Order`, the aggregate type an existing Eventuate Tram
//! system publishes to). Eventuate's `DESTINATION` header and its outbox's `destination`
//! column hold cluster names: in Eventuate Tram the destination *is* the channel.
//!
//! ```
//! use tramline_core::topics::TopicNames;
//!
//! let mut names = TopicNames::with_prefix("bars.");
//! names.rename("order-events", "com.example.order.Order");
//! assert_eq!(names.cluster_name("order-events"), "com.example.order.Order");
//! assert_eq!(names.cluster_name("payment-events"), "bars.payment-events");
//! assert_eq!(names.topic_of("com.example.order.Order"), "order-events");
//! assert_eq!(names.topic_of("bars.payment-events"), "payment-events");
//! ```

use std::collections::BTreeMap;

/// The longest topic name Kafka accepts.
pub const MAX_KAFKA_NAME: usize = 249;

/// A prefix for every logical topic name, and renames that replace it for some topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    /// Prepended to a logical name that has no rename.
    pub prefix: String,
    /// Logical name → cluster name; no prefix is added to these.
    pub renames: BTreeMap<String, String>,
}

/// Why a set of names cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameProblem {
    /// A rename names a topic the application does not have.
    #[error("{topic:?} is not one of the topics ({known})")]
    UnknownTopic {
        /// The logical name given.
        topic: String,
        /// The application's topics, comma-separated.
        known: String,
    },
    /// The cluster name of a topic is not one Kafka accepts.
    #[error("topic {topic:?} would be named {name:?} on the cluster, which Kafka refuses: {why}")]
    InvalidName {
        /// The logical topic.
        topic: String,
        /// Its cluster name.
        name: String,
        /// What Kafka refuses about it.
        why: &'static str,
    },
    /// Two topics end up with one cluster name.
    #[error("topics {first:?} and {second:?} would both be named {name:?} on the cluster")]
    Collision {
        /// The first logical topic (in name order).
        first: String,
        /// The second, whose rename (or prefixed name) collides.
        second: String,
        /// The shared cluster name.
        name: String,
    },
}

impl NameProblem {
    /// The topic whose rename is at fault, if a rename is (otherwise the prefix is).
    pub fn renamed_topic<'a>(&'a self, names: &TopicNames) -> Option<&'a str> {
        let topic = match self {
            NameProblem::UnknownTopic { topic, .. } => topic,
            NameProblem::InvalidName { topic, .. } => topic,
            NameProblem::Collision { first, second, .. } => {
                if names.renames.contains_key(second) {
                    second
                } else {
                    first
                }
            }
        };
        names.renames.contains_key(topic).then_some(topic.as_str())
    }
}

impl TopicNames {
    /// Every topic named `prefix` + its logical name.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        TopicNames {
            prefix: prefix.into(),
            renames: BTreeMap::new(),
        }
    }

    /// Names `topic` `name` on the cluster, without the prefix.
    pub fn rename(&mut self, topic: impl Into<String>, name: impl Into<String>) -> &mut Self {
        self.renames.insert(topic.into(), name.into());
        self
    }

    /// The cluster name of the logical `topic`.
    pub fn cluster_name(&self, topic: &str) -> String {
        match self.renames.get(topic) {
            Some(name) => name.clone(),
            None => format!("{}{topic}", self.prefix),
        }
    }

    /// The logical topic whose rename is `name`, if one is.
    pub fn renamed_to(&self, name: &str) -> Option<&str> {
        self.renames
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(topic, _)| topic.as_str())
    }

    /// The logical name of the cluster topic `name`: the topic renamed to it, else `name`
    /// without the prefix, else `name` itself.
    pub fn topic_of<'a>(&'a self, name: &'a str) -> &'a str {
        self.renamed_to(name)
            .unwrap_or_else(|| name.strip_prefix(self.prefix.as_str()).unwrap_or(name))
    }

    /// Every reason these names cannot serve the application's `topics`: renames of unknown
    /// topics, cluster names Kafka refuses, and two topics sharing one cluster name.
    pub fn problems(&self, topics: &[&str]) -> Vec<NameProblem> {
        let mut problems = Vec::new();
        for topic in self.renames.keys() {
            if !topics.contains(&topic.as_str()) {
                problems.push(NameProblem::UnknownTopic {
                    topic: topic.clone(),
                    known: topics.join(", "),
                });
            }
        }
        let mut sorted = topics.to_vec();
        sorted.sort_unstable();
        let mut taken: BTreeMap<String, &str> = BTreeMap::new();
        for topic in sorted {
            let name = self.cluster_name(topic);
            if let Err(why) = kafka_name(&name) {
                problems.push(NameProblem::InvalidName {
                    topic: topic.to_owned(),
                    name: name.clone(),
                    why,
                });
            }
            if let Some(first) = taken.get(&name) {
                problems.push(NameProblem::Collision {
                    first: (*first).to_owned(),
                    second: topic.to_owned(),
                    name: name.clone(),
                });
            } else {
                taken.insert(name, topic);
            }
        }
        problems
    }
}

/// Whether Kafka accepts `name` as a topic name: 1 to 249 characters of ASCII letters,
/// digits, `.`, `_` and `-`, and neither `.` nor `..`.
pub fn kafka_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_KAFKA_NAME {
        return Err("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return Err("\".\" and \"..\" are not topic names");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPICS: [&str; 3] = ["delivery-events", "order-events", "payment-events"];

    #[test]
    fn names_get_their_prefix_or_rename_and_lose_it_again() {
        let mut names = TopicNames::with_prefix("run7.");
        assert_eq!(names.cluster_name("order-events"), "run7.order-events");
        assert_eq!(names.topic_of("run7.order-events"), "order-events");
        assert_eq!(names.topic_of("elsewhere"), "elsewhere");
        names.rename("order-events", "net.example.Order");
        assert_eq!(names.cluster_name("order-events"), "net.example.Order");
        assert_eq!(names.topic_of("net.example.Order"), "order-events");
        assert_eq!(names.renamed_to("net.example.Order"), Some("order-events"));
        assert_eq!(names.renamed_to("run7.payment-events"), None);
        assert_eq!(names.cluster_name("payment-events"), "run7.payment-events");
        assert!(names.problems(&TOPICS).is_empty());
    }

    #[test]
    fn names_kafka_refuses_are_problems() {
        let mut names = TopicNames::default();
        names
            .rename("order-events", "")
            .rename("payment-events", "com example")
            .rename("delivery-events", "x".repeat(250))
            .rename("orders", "o");
        let problems = names.problems(&TOPICS);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| matches!(
            p,
            NameProblem::UnknownTopic { topic, .. } if topic == "orders"
        )));
        for topic in TOPICS {
            assert!(
                problems.iter().any(|p| matches!(
                    p,
                    NameProblem::InvalidName { topic: t, .. } if t == topic
                )),
                "{topic}: {problems:?}"
            );
            assert!(problems
                .iter()
                .any(|p| p.renamed_topic(&names) == Some(topic)));
        }
        let bad_prefix = TopicNames::with_prefix("a/b.");
        let problems = bad_prefix.problems(&TOPICS);
        assert_eq!(problems.len(), 3);
        assert!(problems
            .iter()
            .all(|p| p.renamed_topic(&bad_prefix).is_none()));
    }

    #[test]
    fn two_topics_on_one_name_are_a_problem() {
        let mut names = TopicNames::default();
        names
            .rename("order-events", "com.example.Order")
            .rename("payment-events", "com.example.Order");
        let problems = names.problems(&TOPICS);
        assert_eq!(
            problems,
            [NameProblem::Collision {
                first: "order-events".into(),
                second: "payment-events".into(),
                name: "com.example.Order".into(),
            }]
        );
        // A rename onto another topic's own (prefixed) name collides too.
        let mut names = TopicNames::default();
        names.rename("payment-events", "order-events");
        let problems = names.problems(&TOPICS);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].renamed_topic(&names), Some("payment-events"));
    }
}
