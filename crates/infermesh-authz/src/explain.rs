//! `infermesh policy check`: the decision for one request, and for every policy
//! whether it matched (and by which rule) or why not. For operators only: it shows
//! policy contents, which clients never see.

use std::fmt;
use std::sync::Arc;

use infermesh_config::Action;

use crate::engine::Authorizer;
use crate::pattern::{Tri, Why};
use crate::request::{AuthzRequest, Basis, Decision};

/// How one policy fared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Rule `rule` matched. `uncertain`: only because an attribute was not known and
    /// the policy fails closed on it.
    Matched { rule: usize, uncertain: bool },
    /// The policy has no rules: it matches nothing.
    NoRules,
    /// No rule matched: the first reason for each rule, in order.
    NotMatched { reasons: Vec<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyResult {
    pub name: Arc<str>,
    pub action: Action,
    pub outcome: Outcome,
}

/// The decision plus every policy's outcome, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub decision: Decision,
    pub policies: Vec<PolicyResult>,
}

pub(crate) fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
        Action::Audit => "AUDIT",
        Action::Custom => "CUSTOM",
    }
}

impl Authorizer {
    /// The decision for `req` with the reason for each policy.
    pub fn explain(&self, req: &AuthzRequest<'_>) -> Explanation {
        let mut decision = self.authorize(req);
        let d = self.derive(req);
        let mut policies: Vec<PolicyResult> = self
            .policies
            .iter()
            .map(|p| PolicyResult {
                name: p.name.clone(),
                action: p.action,
                outcome: if p.rules == 0 {
                    Outcome::NoRules
                } else {
                    Outcome::NotMatched {
                        reasons: Vec::new(),
                    }
                },
            })
            .collect();
        for e in &self.entries {
            let Some(result) = policies.get_mut(e.policy) else {
                continue;
            };
            let Outcome::NotMatched { reasons } = &mut result.outcome else {
                continue;
            };
            let mut why = Why::on();
            let unknown_matches = result.action != Action::Allow;
            match e.compiled.eval(&d, &mut why) {
                Tri::Yes => {
                    result.outcome = Outcome::Matched {
                        rule: e.rule,
                        uncertain: false,
                    }
                }
                Tri::Unknown if unknown_matches => {
                    result.outcome = Outcome::Matched {
                        rule: e.rule,
                        uncertain: true,
                    }
                }
                _ => {
                    let text = why.text.unwrap_or_else(|| "does not match".into());
                    reasons.push(format!("rule {}: {text}", e.rule));
                }
            }
        }
        decision.reasons = policies.iter().map(|p| p.to_string()).collect();
        Explanation { decision, policies }
    }
}

impl fmt::Display for PolicyResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): ", self.name, action_name(self.action))?;
        match &self.outcome {
            Outcome::Matched { rule, uncertain } => {
                write!(f, "matched rule {rule}")?;
                if *uncertain {
                    f.write_str(" (an attribute it tests is not known: fails closed)")?;
                }
                Ok(())
            }
            Outcome::NoRules => f.write_str("no rules: matches nothing"),
            Outcome::NotMatched { reasons } => {
                write!(f, "not matched: {}", reasons.join("; "))
            }
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        writeln!(f, "{}", if d.allowed { "ALLOW" } else { "DENY" })?;
        let by = |f: &mut fmt::Formatter<'_>, what: &str| match &d.deciding {
            Some(x) => writeln!(
                f,
                "decided by: {} policy `{}`, rule {} ({what})",
                action_name(x.action),
                x.policy,
                x.rule
            ),
            None => writeln!(f, "decided by: {what}"),
        };
        match d.basis {
            Basis::CustomUnavailable => by(
                f,
                "CUSTOM providers (ext_authz) are not implemented yet: a match denies",
            )?,
            Basis::DenyMatched => by(f, "a DENY policy matched")?,
            Basis::AllowMatched => by(f, "an ALLOW policy matched")?,
            Basis::NoAllowMatched => by(f, "ALLOW policies exist and none matched")?,
            Basis::Default if d.allowed => by(f, "no ALLOW policy exists; default_deny is false")?,
            Basis::Default => by(f, "no ALLOW policy exists; default deny")?,
        }
        if d.audit {
            writeln!(f, "audit: an AUDIT policy matched")?;
        }
        if self.policies.is_empty() {
            return writeln!(f, "policies: none");
        }
        writeln!(f, "policies:")?;
        for p in &self.policies {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}
