//! Local services that components serve as Lambda functions: the names V1's
//! ML SDK invokes (`GG-ML-INF-<algo>-<service>` for the inference
//! connectors, `MLFeedback` for the feedback connector), and components'
//! own invokes of functions and of those services.
//!
//! V1's ML SDK calls a connector's service with an ordinary Lambda invoke
//! of `arn:aws:lambda:<AWS_REGION>:aws:function:<name>` (post work, then
//! fetch the result); the core routed it to the connector. Here a component
//! registers the name with `Serve` on its stdio link; an invoke of that name
//! becomes a `ToChild::Invoke` frame, and the child's `InvokeResult` becomes
//! the result the caller fetches, with the same `X-Amz-Function-Error`
//! rules as for functions. Only the child that was handed an invocation may
//! answer it. A service whose child stops fails what it was handed with an
//! Unhandled error at once, so callers never wait out the timeout for a
//! child that is gone.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evergreen_ipc::{Invocation, InvokeOutcome, LogLevel};
use tokio::sync::oneshot;

use super::http::base64_encode;
use super::{arn_parts, invocation_id, LambdaHub, Outcome, Target, WorkItem};
use crate::logs::ComponentLog;

/// Invocations one service may hold unanswered; more are refused (429)
/// rather than queued without bound behind a stuck child.
pub(crate) const MAX_HANDED: usize = 256;
/// A caller waits for a service's answer up to its timeout plus this.
const SERVICE_MARGIN: Duration = Duration::from_secs(2);

/// Hands an invocation to the serving child's writer; `false` when the
/// child's link is gone.
pub(crate) type Handoff = Rc<dyn Fn(Invocation) -> bool>;

/// One name a component serves.
pub(crate) struct ServiceLink {
    serial: u64,
    pub(crate) name: String,
    /// The serving component's ARN.
    pub(crate) owner: String,
    timeout: Duration,
    log: ComponentLog,
    handoff: Handoff,
    /// Invocations handed to the child and not yet answered, with when.
    handed: RefCell<HashMap<String, Instant>>,
}

impl std::fmt::Debug for ServiceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLink")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("timeout", &self.timeout)
            .field("handed", &self.handed.borrow().len())
            .finish_non_exhaustive()
    }
}

impl ServiceLink {
    /// Whether invocation `id` was handed to this service and is unanswered.
    pub(crate) fn was_handed(&self, id: &str) -> bool {
        self.handed.borrow().contains_key(id)
    }

    /// How long a caller waits for this service's answer.
    pub(crate) fn limit(&self) -> Duration {
        self.timeout + SERVICE_MARGIN
    }
}

/// Why an invoke could not be handed to a service.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoffError {
    #[error("{0}: {MAX_HANDED} invocations are waiting for its answers")]
    Busy(String),
    #[error("{0}: the component serving it is not running")]
    Gone(String),
}

/// The name part of a local service's ARN: any region, account `aws`
/// (V1's ML SDK puts `AWS_REGION` there; the feedback client too).
pub(crate) fn service_name(arn: &str) -> Option<&str> {
    match arn_parts(arn)? {
        (_, "aws", name, None) => Some(name),
        _ => None,
    }
}

impl LambdaHub {
    /// Registers `name` as served by component `owner`. A name another
    /// component serves is refused; the same component serving it again (a
    /// restarted child) takes it over.
    pub(crate) fn serve(
        &self,
        name: &str,
        owner: &str,
        timeout: Duration,
        log: ComponentLog,
        handoff: Handoff,
    ) -> Result<Rc<ServiceLink>, String> {
        if !valid_name(name) {
            return Err(format!(
                "{name:?} is not a function name ([a-zA-Z0-9-_]{{1,140}})"
            ));
        }
        let mut services = self.local.borrow_mut();
        if let Some(other) = services.get(name).filter(|s| s.owner != owner) {
            return Err(format!("{name} is already served by {}", other.owner));
        }
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        let link = Rc::new(ServiceLink {
            serial,
            name: name.to_string(),
            owner: owner.to_string(),
            timeout,
            log,
            handoff,
            handed: RefCell::new(HashMap::new()),
        });
        if let Some(old) = services.insert(name.to_string(), link.clone()) {
            drop(services);
            self.fail_handed(&old, "its component restarted");
        }
        Ok(link)
    }

    /// The serving child stopped: the name is free again and what it was
    /// handed fails now.
    pub(crate) fn unserve(&self, link: &Rc<ServiceLink>) {
        {
            let mut services = self.local.borrow_mut();
            if services
                .get(&link.name)
                .is_some_and(|l| l.serial == link.serial)
            {
                services.remove(&link.name);
            }
        }
        self.fail_handed(link, "its component stopped");
    }

    fn fail_handed(&self, link: &ServiceLink, why: &str) {
        let ids: Vec<String> = link.handed.borrow_mut().drain().map(|(id, _)| id).collect();
        for id in ids {
            self.complete(&id, Outcome::unhandled(&format!("{}: {why}", link.name)));
        }
    }

    /// The local service `name`, if a component serves it.
    pub(crate) fn local_service(&self, name: &str) -> Option<Rc<ServiceLink>> {
        self.local.borrow().get(name).cloned()
    }

    /// Hands invocation `id` to the service's child. `client_context` is
    /// the decoded JSON (empty when none).
    pub(crate) fn hand_to_service(
        &self,
        link: &ServiceLink,
        id: &str,
        caller: &str,
        client_context: Vec<u8>,
        payload: Vec<u8>,
    ) -> Result<(), HandoffError> {
        {
            let mut handed = link.handed.borrow_mut();
            if handed.len() >= MAX_HANDED {
                // Answers that never came (the caller gave up long ago) go first.
                let now = Instant::now();
                let stale = link.limit() * 2;
                handed.retain(|_, at| now.duration_since(*at) < stale);
                if handed.len() >= MAX_HANDED {
                    return Err(HandoffError::Busy(link.name.clone()));
                }
            }
            handed.insert(id.to_string(), Instant::now());
        }
        let sent = (link.handoff)(Invocation {
            invocation_id: id.to_string(),
            function_name: link.name.clone(),
            caller: caller.to_string(),
            client_context,
            payload,
        });
        if !sent {
            link.handed.borrow_mut().remove(id);
            return Err(HandoffError::Gone(link.name.clone()));
        }
        Ok(())
    }

    /// The child answered invocation `id`. An answer to an invocation it was
    /// not handed (or one already failed) is logged and dropped.
    pub(crate) fn service_answer(&self, link: &ServiceLink, id: &str, outcome: InvokeOutcome) {
        if link.handed.borrow_mut().remove(id).is_none() {
            link.log.write(
                LogLevel::Warn,
                &format!(
                    "answer to invocation {id:?} of {} dropped: not one handed to this component, \
                     or its caller stopped waiting",
                    link.name
                ),
            );
            return;
        }
        self.complete(
            id,
            Outcome {
                function_error: outcome.function_error,
                payload: outcome.payload,
            },
        );
    }

    /// A component's own invoke of `function_arn`: a function of the group
    /// (queued like a Lambda-to-Lambda invoke) or a local service. Resolves
    /// to the outcome, or why there is none, within `timeout`.
    pub(crate) fn component_invoke(
        &self,
        caller: &str,
        function_arn: &str,
        client_context: Vec<u8>,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<(String, oneshot::Receiver<Outcome>), String> {
        let target = self.resolve(function_arn).ok_or_else(|| {
            format!("{function_arn} is not a function of this group, nor a local service")
        })?;
        let id = invocation_id();
        match target {
            Target::Function(link) => {
                if link.direct.borrow().len() >= link.direct_capacity {
                    return Err(format!("{}: its invoke queue is full", link.arn));
                }
                let limit = timeout.min(link.timeout + SERVICE_MARGIN);
                let rx = self.await_result(&id, caller, limit)?;
                let context = if client_context.is_empty() {
                    String::new()
                } else {
                    base64_encode(&client_context)
                };
                link.enqueue(WorkItem {
                    id: id.clone(),
                    payload: payload.into(),
                    client_context: context,
                });
                Ok((id, rx))
            }
            Target::Service(link) => {
                let rx = self.await_result(&id, caller, timeout.min(link.limit()))?;
                if let Err(e) = self.hand_to_service(&link, &id, caller, client_context, payload) {
                    self.forget_result(&id);
                    return Err(e.to_string());
                }
                Ok((id, rx))
            }
            Target::Router | Target::Shadow | Target::Secrets => Err(format!(
                "{function_arn}: components publish, read shadows and secrets with their own \
                 frames, not by invoking the Greengrass services"
            )),
        }
    }

    /// Drops the result entry of `id` (its waiter gave up).
    pub(crate) fn forget_result(&self, id: &str) {
        self.results.borrow_mut().remove(id);
    }

    /// Records a result entry for `id` with one waiter.
    fn await_result(
        &self,
        id: &str,
        caller: &str,
        limit: Duration,
    ) -> Result<oneshot::Receiver<Outcome>, String> {
        if !self.expect_result(id, caller, None, limit) {
            return Err("too many results are waiting to be fetched".into());
        }
        let (tx, rx) = oneshot::channel();
        if let Some(pending) = self.results.borrow_mut().get_mut(id) {
            pending.waiters.push(tx);
        }
        Ok(rx)
    }
}

/// Lambda's function-name alphabet and length.
fn valid_name(name: &str) -> bool {
    (1..=140).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_arns_are_any_region_account_aws() {
        assert_eq!(
            service_name(
                "arn:aws:lambda:us-west-2:aws:function:GG-ML-INF-image-classification-svc"
            ),
            Some("GG-ML-INF-image-classification-svc")
        );
        assert_eq!(
            service_name("arn:aws:lambda:eu-west-1:aws:function:MLFeedback"),
            Some("MLFeedback")
        );
        assert_eq!(
            service_name("arn:aws:lambda:us-west-2:123:function:f"),
            None
        );
        assert_eq!(service_name("arn:aws:lambda:::function:GGRouter"), None);
        assert!(valid_name("GG-ML-INF-object-detection-a1"));
        assert!(!valid_name("a:b"));
        assert!(!valid_name(""));
    }
}
