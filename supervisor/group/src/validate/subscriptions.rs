//! Subscriptions: valid topic filters between endpoints that exist in the
//! group (named exactly, connectors by their deployed version), and subjects
//! that can match what a connector or the shadow service actually speaks.

use evergreen_ipc::manifest::{parse_connector_arn, ConnectorManifest};
use evergreen_ipc::topic::{self, TopicError};

use super::arns::{parse_function_arn, parse_thing_arn, FunctionArn};
use super::{show, Validator};
use crate::model::GroupDefinition;
use crate::plan::{CoreSpec, SubscriptionSpec};

const CLOUD: &str = "cloud";
const SHADOW: &str = "GGShadowService";
/// Everything the local shadow service sends or accepts lives under this.
const SHADOW_TOPICS: &str = "$aws/things/+/shadow/#";

const SUBSCRIPTIONS: &str = "$.SubscriptionDefinitionVersion.Subscriptions";

/// What a subscription's `Source` or `Target` turned out to be.
#[derive(Debug)]
enum Endpoint {
    Cloud,
    Shadow,
    Other,
    Connector(&'static ConnectorManifest),
}

impl Validator<'_> {
    pub(super) fn subscriptions(
        &mut self,
        group: &GroupDefinition,
        core: Option<&CoreSpec>,
    ) -> Vec<SubscriptionSpec> {
        let Some(sdv) = &group.subscription_definition_version else {
            return Vec::new();
        };
        self.check_unique(
            "subscription Id",
            sdv.subscriptions
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("{SUBSCRIPTIONS}[{i}].Id"), s.id.as_str())),
        );
        let mut out = Vec::with_capacity(sdv.subscriptions.len());
        for (i, s) in sdv.subscriptions.iter().enumerate() {
            let path = format!("{SUBSCRIPTIONS}[{i}]");
            self.check_id(format!("{path}.Id"), &s.id);
            let subject_ok = match topic::validate_filter(&s.subject) {
                Ok(()) => true,
                Err(e) => {
                    self.err(format!("{path}.Subject"), subject_message(&s.subject, &e));
                    false
                }
            };
            let source = self.endpoint(&format!("{path}.Source"), &s.id, &s.source, core);
            let target = self.endpoint(&format!("{path}.Target"), &s.id, &s.target, core);
            match (&source, &target) {
                (Some(Endpoint::Cloud), Some(Endpoint::Cloud))
                | (Some(Endpoint::Shadow), Some(Endpoint::Shadow)) => {
                    self.err(
                        format!("{path}.Target"),
                        format!("a subscription from {0} to {0} would loop messages back to where they came from", s.source),
                    );
                }
                _ => {}
            }
            if subject_ok {
                self.subject_fits(&path, &s.subject, source.as_ref(), target.as_ref());
            }
            out.push(SubscriptionSpec {
                id: s.id.clone(),
                source: s.source.clone(),
                subject: s.subject.clone(),
                target: s.target.clone(),
            });
        }
        out
    }

    /// Resolves a `Source`/`Target`; reports and returns `None` when it names
    /// nothing in the group.
    fn endpoint(
        &mut self,
        path: &str,
        id: &str,
        value: &str,
        core: Option<&CoreSpec>,
    ) -> Option<Endpoint> {
        if value == CLOUD {
            return Some(Endpoint::Cloud);
        }
        if value == SHADOW {
            return Some(Endpoint::Shadow);
        }
        if self.function_arns.contains(value) {
            return Some(Endpoint::Other);
        }
        if let Some(manifest) = self.connector_manifests.get(value) {
            // A connector this build lacks is already an error; do not add
            // topic errors on top of it.
            return Some(manifest.map_or(Endpoint::Other, Endpoint::Connector));
        }
        if self.devices.contains_key(value) {
            return Some(Endpoint::Other);
        }
        let message = self.unknown_endpoint(id, value, core);
        self.err(path, message);
        None
    }

    /// The most useful explanation for an endpoint that is not in the group.
    fn unknown_endpoint(&self, id: &str, value: &str, core: Option<&CoreSpec>) -> String {
        if let Some((name, version)) = parse_connector_arn(value) {
            return match self.connectors_by_name.get(name) {
                Some(deployed) if deployed.version != version => format!(
                    "stale subscription `{}`: it refers to {name} version {version} ({}), but the group deploys \
                     {name} version {} ({}); after a connector upgrade every subscription that uses it must be replaced",
                    show(id),
                    show(value),
                    deployed.version,
                    deployed.arn
                ),
                Some(deployed) => format!(
                    "`{}` is not exactly the ConnectorArn of {name} in this group (`{}`); subscriptions name a \
                     connector by its exact versioned ARN",
                    show(value),
                    deployed.arn
                ),
                None => format!("connector {name} is not in this group's ConnectorDefinitionVersion"),
            };
        }
        if let Ok(FunctionArn::User(parts)) = parse_function_arn(value) {
            if let Some(arns) = self.functions_by_base.get(&parts.base()) {
                return format!(
                    "function {} is in this group as `{}`; a subscription must use the same qualifier",
                    parts.name,
                    arns.join("`, `")
                );
            }
            return format!(
                "function `{}` is not in this group's FunctionDefinitionVersion",
                show(value)
            );
        }
        if parse_thing_arn(value).is_ok() {
            if core.is_some_and(|c| c.thing_arn == value) {
                return "the core itself cannot be a subscription source or target".to_string();
            }
            return format!(
                "device `{}` is not in this group's DeviceDefinitionVersion",
                show(value)
            );
        }
        format!(
            "`{}` is not \"{CLOUD}\", \"{SHADOW}\", or the ARN of a function, connector or device in this group",
            show(value)
        )
    }

    /// A connector only speaks its predefined topics, and the shadow service
    /// only shadow topics: a subject that can never match them is a mistake.
    fn subject_fits(
        &mut self,
        path: &str,
        subject: &str,
        source: Option<&Endpoint>,
        target: Option<&Endpoint>,
    ) {
        if let Some(Endpoint::Connector(m)) = target {
            self.subject_within(path, subject, m.name, m.inputs, "accepts");
        }
        if let Some(Endpoint::Connector(m)) = source {
            self.subject_within(path, subject, m.name, m.outputs, "publishes");
        }
        let shadow = source.is_some_and(|e| matches!(e, Endpoint::Shadow))
            || target.is_some_and(|e| matches!(e, Endpoint::Shadow));
        if shadow && !topic::filters_intersect(subject, SHADOW_TOPICS) {
            self.err(
                format!("{path}.Subject"),
                format!(
                    "`{}` can never match a shadow topic ({SHADOW_TOPICS}), the only topics {SHADOW} speaks",
                    show(subject)
                ),
            );
        }
    }

    fn subject_within(
        &mut self,
        path: &str,
        subject: &str,
        name: &str,
        topics: &[&str],
        verb: &str,
    ) {
        if topics.is_empty() {
            self.err(
                format!("{path}.Subject"),
                format!(
                    "{name} {verb} no MQTT messages; a connector only speaks its predefined topics"
                ),
            );
        } else if !topics.iter().any(|t| topic::filters_intersect(subject, t)) {
            self.err(
                format!("{path}.Subject"),
                format!(
                    "`{}` can never match a topic that {name} {verb} ({}); a connector only speaks its predefined topics",
                    show(subject),
                    topics.join(", ")
                ),
            );
        }
    }
}

fn subject_message(subject: &str, e: &TopicError) -> String {
    match e {
        TopicError::Empty => "Subject cannot be empty".to_string(),
        _ => format!("`{}` is not a valid topic filter: {e}", show(subject)),
    }
}
