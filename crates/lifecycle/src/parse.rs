//! Structural parsing of policy JSON. Walks the `serde_json::Value` by hand
//! (rather than deriving `Deserialize`) so that every problem is reported,
//! each naming its rule and field, instead of stopping at the first.

use super::pattern::TagPattern;
use super::policy::{
    Action, ActionType, CountType, CountUnit, LifecyclePolicy, PolicyError, PolicyIssue, Rule,
    RuleRef, Selection, StorageClass, TagStatus,
};
use super::validate;
use serde_json::{Map, Value};

const POLICY_FIELDS: &[&str] = &["rules"];
const RULE_FIELDS: &[&str] = &["rulePriority", "description", "selection", "action"];
const SELECTION_FIELDS: &[&str] = &[
    "tagStatus",
    "tagPatternList",
    "tagPrefixList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
];
const ACTION_FIELDS: &[&str] = &["type", "targetStorageClass"];

/// Marks a field whose problem has already been recorded.
struct Reported;

type Field<T> = Result<T, Reported>;

/// Issue sink bound to one rule (or to the policy when `rule` is `None`).
struct Sink<'a> {
    out: &'a mut Vec<PolicyIssue>,
    rule: Option<RuleRef>,
}

impl Sink<'_> {
    fn add(&mut self, field: &str, problem: impl Into<String>) -> Reported {
        self.out.push(PolicyIssue {
            rule: self.rule,
            field: field.to_owned(),
            problem: problem.into(),
        });
        Reported
    }

    fn reject_unknown(
        &mut self,
        obj: &Map<String, Value>,
        allowed: &[&str],
        prefix: &str,
    ) -> Field<()> {
        let mut ok = true;
        for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.add(&format!("{prefix}{key}"), "is not a recognised field");
            ok = false;
        }
        if ok {
            Ok(())
        } else {
            Err(Reported)
        }
    }

    fn object<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Field<&'v Map<String, Value>> {
        match obj.get(key) {
            None => Err(self.add(path, "is required")),
            Some(Value::Object(inner)) => Ok(inner),
            Some(_) => Err(self.add(path, "must be a JSON object")),
        }
    }

    fn wire<E: Copy>(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        parse: fn(&str) -> Option<E>,
        values: &[&str],
    ) -> Field<Option<E>> {
        let Some(v) = obj.get(key) else {
            return Ok(None);
        };
        match v.as_str().and_then(parse) {
            Some(e) => Ok(Some(e)),
            None => {
                let expected: Vec<String> = values.iter().map(|s| format!("{s:?}")).collect();
                Err(self.add(
                    path,
                    format!("must be one of {} (got {v})", expected.join(", ")),
                ))
            }
        }
    }

    fn required<T>(&mut self, field: Field<Option<T>>, path: &str) -> Field<T> {
        match field? {
            Some(v) => Ok(v),
            None => Err(self.add(path, "is required")),
        }
    }

    fn number(&mut self, obj: &Map<String, Value>, key: &str, path: &str) -> Field<u32> {
        match obj.get(key) {
            None => Err(self.add(path, "is required")),
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Ok(n),
                None => Err(self.add(path, format!("must be a positive integer (got {v})"))),
            },
        }
    }

    fn strings(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Field<Option<Vec<String>>> {
        let Some(v) = obj.get(key) else {
            return Ok(None);
        };
        let items = v.as_array().and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        });
        match items {
            Some(list) => Ok(Some(list)),
            None => Err(self.add(path, "must be an array of strings")),
        }
    }
}

/// Parses a whole policy, then runs the semantic checks on every rule that
/// parsed cleanly, so one call reports as many problems as possible.
pub(super) fn parse_policy(value: &Value) -> Result<LifecyclePolicy, PolicyError> {
    let mut issues = Vec::new();
    let mut rules = Vec::new();
    let mut complete = true;
    {
        let mut sink = Sink {
            out: &mut issues,
            rule: None,
        };
        let Some(obj) = value.as_object() else {
            sink.add("", "must be a JSON object with a \"rules\" array");
            return Err(PolicyError { issues });
        };
        // An unknown top-level field does not make the rules partial.
        let _ = sink.reject_unknown(obj, POLICY_FIELDS, "");
        match obj.get("rules") {
            None => {
                sink.add("rules", "is required");
                complete = false;
            }
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match parse_rule(i + 1, item, sink.out) {
                        Some(rule) => rules.push((i + 1, rule)),
                        None => complete = false,
                    }
                }
            }
            Some(_) => {
                sink.add("rules", "must be an array");
                complete = false;
            }
        }
    }
    let refs: Vec<(usize, &Rule)> = rules.iter().map(|(i, r)| (*i, r)).collect();
    if complete {
        validate::check_policy(&refs, &mut issues);
    } else {
        // Cross-rule checks on a partial rule set could mislead; per-rule ones are safe.
        validate::check_rules_individually(&refs, &mut issues);
    }
    if issues.is_empty() {
        Ok(LifecyclePolicy {
            rules: rules.into_iter().map(|(_, r)| r).collect(),
        })
    } else {
        validate::sort_issues(&mut issues);
        Err(PolicyError { issues })
    }
}

fn parse_rule(index: usize, value: &Value, out: &mut Vec<PolicyIssue>) -> Option<Rule> {
    let priority = value.get("rulePriority").and_then(Value::as_i64);
    let mut sink = Sink {
        out,
        rule: Some(RuleRef { index, priority }),
    };
    let Some(obj) = value.as_object() else {
        sink.add("", "must be a JSON object");
        return None;
    };
    let unknown = sink.reject_unknown(obj, RULE_FIELDS, "");
    let rule_priority = sink.number(obj, "rulePriority", "rulePriority");
    let description = match obj.get("description") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(sink.add("description", "must be a string")),
    };
    let selection = sink
        .object(obj, "selection", "selection")
        .and_then(|sel| parse_selection(sel, &mut sink));
    let action = sink
        .object(obj, "action", "action")
        .and_then(|act| parse_action(act, &mut sink));
    unknown.ok()?;
    Some(Rule {
        rule_priority: rule_priority.ok()?,
        description: description.ok()?,
        selection: selection.ok()?,
        action: action.ok()?,
    })
}

fn parse_selection(obj: &Map<String, Value>, sink: &mut Sink<'_>) -> Field<Selection> {
    let unknown = sink.reject_unknown(obj, SELECTION_FIELDS, "selection.");
    let status = sink.wire(
        obj,
        "tagStatus",
        "selection.tagStatus",
        TagStatus::from_wire,
        TagStatus::WIRE_VALUES,
    );
    let tag_status = sink.required(status, "selection.tagStatus");
    let tag_pattern_list = parse_patterns(obj, sink);
    let tag_prefix_list = sink.strings(obj, "tagPrefixList", "selection.tagPrefixList");
    let storage_class = sink.wire(
        obj,
        "storageClass",
        "selection.storageClass",
        StorageClass::from_wire,
        StorageClass::WIRE_VALUES,
    );
    let count = sink.wire(
        obj,
        "countType",
        "selection.countType",
        CountType::from_wire,
        CountType::WIRE_VALUES,
    );
    let count_type = sink.required(count, "selection.countType");
    let count_unit = sink.wire(
        obj,
        "countUnit",
        "selection.countUnit",
        CountUnit::from_wire,
        CountUnit::WIRE_VALUES,
    );
    let count_number = sink.number(obj, "countNumber", "selection.countNumber");
    unknown?;
    Ok(Selection {
        tag_status: tag_status?,
        tag_pattern_list: tag_pattern_list?,
        tag_prefix_list: tag_prefix_list?,
        storage_class: storage_class?,
        count_type: count_type?,
        count_unit: count_unit?,
        count_number: count_number?,
    })
}

fn parse_patterns(obj: &Map<String, Value>, sink: &mut Sink<'_>) -> Field<Option<Vec<TagPattern>>> {
    let Some(raw) = sink.strings(obj, "tagPatternList", "selection.tagPatternList")? else {
        return Ok(None);
    };
    let mut patterns = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, text) in raw.iter().enumerate() {
        match TagPattern::new(text) {
            Ok(p) => patterns.push(p),
            Err(e) => {
                sink.add(
                    &format!("selection.tagPatternList[{i}]"),
                    format!("{e} (got {text:?})"),
                );
                ok = false;
            }
        }
    }
    if ok {
        Ok(Some(patterns))
    } else {
        Err(Reported)
    }
}

fn parse_action(obj: &Map<String, Value>, sink: &mut Sink<'_>) -> Field<Action> {
    let unknown = sink.reject_unknown(obj, ACTION_FIELDS, "action.");
    let kind = sink.wire(
        obj,
        "type",
        "action.type",
        ActionType::from_wire,
        ActionType::WIRE_VALUES,
    );
    let kind = sink.required(kind, "action.type");
    let target = sink.wire(
        obj,
        "targetStorageClass",
        "action.targetStorageClass",
        StorageClass::from_wire,
        StorageClass::WIRE_VALUES,
    );
    unknown?;
    Ok(Action {
        kind: kind?,
        target_storage_class: target?,
    })
}
