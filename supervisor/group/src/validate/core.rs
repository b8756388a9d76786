//! The core and its client devices: exactly one core, each device once and
//! never the core itself, every thing and certificate ARN well formed.

use super::arns::{check_certificate_arn, parse_thing_arn};
use super::Validator;
use crate::model::GroupDefinition;
use crate::plan::{CoreSpec, DeviceSpec};

const MAX_DEVICES: usize = 2500;

const CORES: &str = "$.CoreDefinitionVersion.Cores";
const DEVICES: &str = "$.DeviceDefinitionVersion.Devices";

impl Validator<'_> {
    pub(super) fn cores(&mut self, group: &GroupDefinition) -> Option<CoreSpec> {
        let Some(cdv) = &group.core_definition_version else {
            return match parse_thing_arn(&self.opts.default_core_thing_arn) {
                Ok(t) => Some(CoreSpec {
                    thing_arn: self.opts.default_core_thing_arn.clone(),
                    thing_name: t.name,
                    region: t.region,
                    account: t.account,
                    sync_shadow: false,
                }),
                Err(problem) => {
                    self.err(
                        "$",
                        format!(
                            "the group has no CoreDefinitionVersion and the configured core thing ARN is unusable: {problem}"
                        ),
                    );
                    None
                }
            };
        };
        let mut spec = None;
        for (i, core) in cdv.cores.iter().enumerate() {
            let path = format!("{CORES}[{i}]");
            self.check_id(format!("{path}.Id"), &core.id);
            if let Err(problem) = check_certificate_arn(&core.certificate_arn) {
                self.err(format!("{path}.CertificateArn"), problem);
            }
            match parse_thing_arn(&core.thing_arn) {
                Ok(t) if i == 0 => {
                    spec = Some(CoreSpec {
                        thing_arn: core.thing_arn.clone(),
                        thing_name: t.name,
                        region: t.region,
                        account: t.account,
                        sync_shadow: core.sync_shadow.unwrap_or(false),
                    })
                }
                Ok(_) => {}
                Err(problem) => self.err(format!("{path}.ThingArn"), problem),
            }
        }
        match cdv.cores.len() {
            0 => self.err(
                CORES,
                "a CoreDefinitionVersion must contain exactly one core (it has none)",
            ),
            1 => {}
            n => self.err(
                format!("{CORES}[1]"),
                format!("a CoreDefinitionVersion must contain exactly one core (it has {n})"),
            ),
        }
        spec
    }

    pub(super) fn devices(&mut self, group: &GroupDefinition, core: Option<&CoreSpec>) {
        let Some(ddv) = &group.device_definition_version else {
            return;
        };
        if ddv.devices.len() > MAX_DEVICES {
            self.err(
                DEVICES,
                format!(
                    "a group may have at most {MAX_DEVICES} devices (it has {})",
                    ddv.devices.len()
                ),
            );
        }
        self.check_unique(
            "device Id",
            ddv.devices
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("{DEVICES}[{i}].Id"), d.id.as_str())),
        );
        for (i, device) in ddv.devices.iter().enumerate() {
            let path = format!("{DEVICES}[{i}]");
            self.check_id(format!("{path}.Id"), &device.id);
            if let Err(problem) = check_certificate_arn(&device.certificate_arn) {
                self.err(format!("{path}.CertificateArn"), problem);
            }
            let thing = match parse_thing_arn(&device.thing_arn) {
                Ok(t) => t,
                Err(problem) => {
                    self.err(format!("{path}.ThingArn"), problem);
                    continue;
                }
            };
            if core.is_some_and(|c| c.thing_arn == device.thing_arn) {
                self.err(
                    format!("{path}.ThingArn"),
                    "this is the group's core; the core is not one of its client devices",
                );
                continue;
            }
            if self.devices.contains_key(&device.thing_arn) {
                let first = ddv
                    .devices
                    .iter()
                    .position(|d| d.thing_arn == device.thing_arn)
                    .unwrap_or(0);
                self.err(
                    format!("{path}.ThingArn"),
                    format!(
                        "duplicate device ThingArn (first used at {DEVICES}[{first}].ThingArn)"
                    ),
                );
                continue;
            }
            self.devices.insert(
                device.thing_arn.clone(),
                DeviceSpec {
                    id: device.id.clone(),
                    thing_arn: device.thing_arn.clone(),
                    thing_name: thing.name,
                    certificate_arn: device.certificate_arn.clone(),
                    sync_shadow: device.sync_shadow.unwrap_or(false),
                },
            );
        }
    }
}
