//! Compiled Istio string matches (exact, `prefix*`, `*suffix`, `*` = present), the
//! three-valued result used to fail closed on attributes that are not known, and the
//! lazily written "why not" text of explanations.

/// One compiled pattern.
#[derive(Clone, Debug)]
pub(crate) enum Pat {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// `*`: any value, as long as there is one.
    Present,
}

impl Pat {
    pub fn compile(p: &str) -> Pat {
        if p == "*" {
            Pat::Present
        } else if let Some(s) = p.strip_suffix('*') {
            Pat::Prefix(s.into())
        } else if let Some(s) = p.strip_prefix('*') {
            Pat::Suffix(s.into())
        } else {
            Pat::Exact(p.into())
        }
    }

    fn matches(&self, v: &str, fold_case: bool) -> bool {
        let eq = |a: &str, b: &str| {
            if fold_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self {
            Pat::Exact(p) => eq(p, v),
            Pat::Prefix(p) => {
                v.len() >= p.len() && v.is_char_boundary(p.len()) && eq(p, &v[..p.len()])
            }
            Pat::Suffix(p) => {
                let at = v.len().wrapping_sub(p.len());
                v.len() >= p.len() && v.is_char_boundary(at) && eq(p, &v[at..])
            }
            Pat::Present => true,
        }
    }
}

/// A field's patterns; empty means the field is not set.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pats {
    pats: Vec<Pat>,
    fold_case: bool,
}

impl Pats {
    pub fn compile(patterns: &[String], fold_case: bool) -> Pats {
        Pats {
            pats: patterns.iter().map(|p| Pat::compile(p)).collect(),
            fold_case,
        }
    }

    pub fn is_set(&self) -> bool {
        !self.pats.is_empty()
    }

    pub fn any(&self, v: &str) -> bool {
        self.pats.iter().any(|p| p.matches(v, self.fold_case))
    }

    pub fn pats(&self) -> &[Pat] {
        &self.pats
    }
}

/// Kleene three-valued logic: `Unknown` when an attribute the rule tests is not known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tri {
    No,
    Yes,
    Unknown,
}

impl Tri {
    pub fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
            _ => Tri::Unknown,
        }
    }

    pub fn or(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::Yes, _) | (_, Tri::Yes) => Tri::Yes,
            (Tri::No, Tri::No) => Tri::No,
            _ => Tri::Unknown,
        }
    }
}

/// The value of a request attribute as a field sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    /// Known: `None` when the request has no such attribute.
    Known(Option<&'a str>),
    /// Not known (not inspected or not resolved yet).
    Unknown,
}

/// A field and its `not_` form.
#[derive(Clone, Debug, Default)]
pub(crate) struct Field {
    pub name: &'static str,
    pub pos: Pats,
    pub neg: Pats,
}

impl Field {
    pub fn compile(name: &'static str, pos: &[String], neg: &[String], fold_case: bool) -> Field {
        Field {
            name,
            pos: Pats::compile(pos, fold_case),
            neg: Pats::compile(neg, fold_case),
        }
    }

    pub fn is_set(&self) -> bool {
        self.pos.is_set() || self.neg.is_set()
    }

    /// Istio: the value must match one of the field's values and none of its `not_`
    /// values; a missing value matches no pattern (so `not_` holds).
    pub fn eval(&self, v: Val<'_>, why: &mut Why) -> Tri {
        if !self.is_set() {
            return Tri::Yes;
        }
        let v = match v {
            Val::Known(v) => v,
            Val::Unknown => {
                why.note(|| format!("`{}`: not known for this request (fails closed)", self.name));
                return Tri::Unknown;
            }
        };
        self.eval_many(v.into_iter(), why)
    }

    /// As [`Field::eval`] for a multi-valued attribute: any value may match.
    pub fn eval_many<'v>(
        &self,
        values: impl Iterator<Item = &'v str> + Clone,
        why: &mut Why,
    ) -> Tri {
        if !self.is_set() {
            return Tri::Yes;
        }
        if self.pos.is_set() && !values.clone().any(|v| self.pos.any(v)) {
            why.note(|| format!("`{}` does not match {}", self.name, shown(values.clone())));
            return Tri::No;
        }
        if self.neg.is_set() && values.clone().any(|v| self.neg.any(v)) {
            why.note(|| format!("`not_{}` matches {}", self.name, shown(values)));
            return Tri::No;
        }
        Tri::Yes
    }
}

fn shown<'v>(values: impl Iterator<Item = &'v str>) -> String {
    let all: Vec<String> = values.map(|v| format!("{v:?}")).collect();
    match all.len() {
        0 => "(none)".to_owned(),
        1 => all.join(""),
        _ => format!("[{}]", all.join(", ")),
    }
}

/// The first reason a rule did not match, written only when explaining.
#[derive(Debug, Default)]
pub(crate) struct Why {
    on: bool,
    pub text: Option<String>,
}

impl Why {
    pub fn off() -> Why {
        Why {
            on: false,
            text: None,
        }
    }

    pub fn on() -> Why {
        Why {
            on: true,
            text: None,
        }
    }

    pub fn note(&mut self, reason: impl FnOnce() -> String) {
        if self.on && self.text.is_none() {
            self.text = Some(reason());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_string_matches() {
        let p = Pats::compile(&["abc".into(), "pre*".into(), "*suf".into()], false);
        assert!(p.any("abc") && p.any("prefix") && p.any("pre") && p.any("a-suf"));
        assert!(!p.any("ABC") && !p.any("xpre") && !p.any("sufx") && !p.any(""));
        let host = Pats::compile(&["*.Example.com".into()], true);
        assert!(host.any("api.example.COM"));
        assert!(Pats::compile(&["*".into()], false).any(""));
        // Multi-byte text never splits a character.
        assert!(!Pats::compile(&["é*".into(), "*é".into()], false).any("e"));
        assert!(!Pats::compile(&["a*".into()], true).any("\u{e9}"));
    }

    #[test]
    fn kleene_logic() {
        assert_eq!(Tri::Unknown.and(Tri::No), Tri::No);
        assert_eq!(Tri::Unknown.and(Tri::Yes), Tri::Unknown);
        assert_eq!(Tri::Unknown.or(Tri::Yes), Tri::Yes);
        assert_eq!(Tri::Unknown.or(Tri::No), Tri::Unknown);
    }
}
