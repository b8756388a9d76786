//! Loggers: known components, levels and types, a positive space, and at
//! most one logger of each type per component; the result is the plan's
//! log settings.

use std::collections::BTreeMap;

use evergreen_ipc::LogLevel;

use super::{show, Validator};
use crate::model::GroupDefinition;
use crate::plan::{LogSettings, LoggerPlan, DEFAULT_SYSTEM_SPACE_KB};

const DEFAULT_LOG_SPACE_KB: u64 = 128;

const LOGGERS: &str = "$.LoggerDefinitionVersion.Loggers";

impl Validator<'_> {
    pub(super) fn loggers(&mut self, group: &GroupDefinition) -> LoggerPlan {
        let mut plan = LoggerPlan::default();
        let Some(ldv) = &group.logger_definition_version else {
            return plan;
        };
        self.check_unique(
            "logger Id",
            ldv.loggers
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("{LOGGERS}[{i}].Id"), l.id.as_str())),
        );
        // (component is system, type is file system) → (level, space, path)
        let mut chosen: BTreeMap<(bool, bool), (LogLevel, Option<u64>, String)> = BTreeMap::new();
        for (i, logger) in ldv.loggers.iter().enumerate() {
            let path = format!("{LOGGERS}[{i}]");
            self.check_id(format!("{path}.Id"), &logger.id);
            let system = match logger.component.as_str() {
                "GreengrassSystem" => Some(true),
                "Lambda" => Some(false),
                other => {
                    self.err(
                        format!("{path}.Component"),
                        format!(
                            "`{}` is not a logger component: use GreengrassSystem or Lambda",
                            show(other)
                        ),
                    );
                    None
                }
            };
            let level = LogLevel::parse(&logger.level);
            if level.is_none() {
                self.err(
                    format!("{path}.Level"),
                    format!(
                        "`{}` is not a level: use DEBUG, INFO, WARN, ERROR or FATAL",
                        show(&logger.level)
                    ),
                );
            }
            let file_system = match logger.logger_type.as_str() {
                "FileSystem" => Some(true),
                "AWSCloudWatch" => Some(false),
                other => {
                    self.err(
                        format!("{path}.Type"),
                        format!(
                            "`{}` is not a logger type: use FileSystem or AWSCloudWatch",
                            show(other)
                        ),
                    );
                    None
                }
            };
            let space = self.positive(&format!("{path}.Space"), logger.space, "KB");
            let space_ok = logger.space.is_none() || space.is_some();
            let (Some(system), Some(level), Some(file_system), true) =
                (system, level, file_system, space_ok)
            else {
                continue;
            };
            if let Some((_, _, first)) = chosen.get(&(system, file_system)) {
                let message = format!(
                    "a second {} logger for {} (first at {first}); each component has at most one logger of each Type",
                    logger.logger_type, logger.component
                );
                self.err(format!("{path}.Type"), message);
                continue;
            }
            chosen.insert((system, file_system), (level, space, path));
        }
        for (system, settings) in [(true, &mut plan.system), (false, &mut plan.user)] {
            let default_space = if system {
                DEFAULT_SYSTEM_SPACE_KB
            } else {
                DEFAULT_LOG_SPACE_KB
            };
            let cloud_watch = chosen.get(&(system, false)).map(|(level, _, _)| *level);
            if let Some((level, space, _)) = chosen.get(&(system, true)) {
                *settings = LogSettings {
                    level: *level,
                    space_kb: space.unwrap_or(default_space),
                    file_system: true,
                    cloud_watch,
                };
            } else if let Some(level) = cloud_watch {
                *settings = LogSettings {
                    level,
                    space_kb: default_space,
                    file_system: false,
                    cloud_watch,
                };
            }
        }
        plan
    }
}
