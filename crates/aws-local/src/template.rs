//! `template.yaml` read as CloudFormation reads it: the YAML short forms (`!Ref`, `!GetAtt`,
//! `!Sub`, ...) turned into their JSON forms, parameters with their defaults, conditions, and the
//! intrinsic functions evaluated against the resources made so far.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value};

pub struct Template {
    pub parameters: Map<String, Value>,
    pub conditions: Map<String, Value>,
    pub globals: Value,
    pub resources: Map<String, Value>,
}

impl Template {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parse {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let yaml: serde_norway::Value = serde_norway::from_str(text)?;
        let mut root = to_json(yaml)?;
        let mut take = |key: &str| root.get_mut(key).map(Value::take).unwrap_or(Value::Null);
        let object = |v: Value| match v {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Ok(Self {
            parameters: object(take("Parameters")),
            conditions: object(take("Conditions")),
            globals: take("Globals"),
            resources: object(take("Resources")),
        })
    }

    /// The resources of one type, by logical id.
    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.resources
            .iter()
            .filter(move |(_, r)| r["Type"] == kind)
            .map(|(id, r)| (id.as_str(), r))
    }
}

/// `!Ref X` → `{"Ref": "X"}`, `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` →
/// `{"Fn::Sub": s}`, and so on for every `!Name`.
fn to_json(yaml: serde_norway::Value) -> anyhow::Result<Value> {
    use serde_norway::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n)?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Y::Mapping(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => bail!("a mapping key that is not a scalar: {other:?}"),
                };
                map.insert(key, to_json(v)?);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => {
            let name = tagged.tag.to_string();
            let name = name.trim_start_matches('!');
            let value = to_json(tagged.value)?;
            match name {
                "Ref" | "Condition" => single(name, value),
                "GetAtt" => match value {
                    Value::String(s) => {
                        let (resource, attribute) = s
                            .split_once('.')
                            .ok_or_else(|| anyhow!("!GetAtt {s}: not Resource.Attribute"))?;
                        single("Fn::GetAtt", Value::from(vec![resource, attribute]))
                    }
                    other => single("Fn::GetAtt", other),
                },
                _ => single(&format!("Fn::{name}"), value),
            }
        }
    })
}

fn single(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    Value::Object(map)
}

/// What `Ref` and `Fn::GetAtt` give for the parameters, the pseudo parameters and the resources
/// made so far.
pub struct Resolver<'a> {
    template: &'a Template,
    values: HashMap<String, String>,
    attributes: HashMap<(String, String), String>,
}

/// `AWS::NoValue`: the property is left out.
const NO_VALUE: &str = "AWS::NoValue";

impl<'a> Resolver<'a> {
    /// The parameters' values: `given`, else their `Default`. A parameter without either, or a
    /// value outside its `AllowedValues`, is an error naming it.
    pub fn new(
        template: &'a Template,
        given: &HashMap<String, String>,
        pseudo: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let mut values = HashMap::new();
        for name in given.keys() {
            if !template.parameters.contains_key(name) {
                bail!("the template has no parameter {name}");
            }
        }
        for (name, declaration) in &template.parameters {
            let value = match (given.get(name), declaration.get("Default")) {
                (Some(v), _) => v.clone(),
                (None, Some(default)) => {
                    scalar(default).with_context(|| format!("the default of parameter {name}"))?
                }
                (None, None) => bail!("parameter {name} has no default: give it a value"),
            };
            if let Some(allowed) = declaration["AllowedValues"].as_array()
                && !allowed
                    .iter()
                    .any(|a| scalar(a).ok().as_deref() == Some(&value))
            {
                bail!("parameter {name}={value:?} is not one of {allowed:?}");
            }
            values.insert(name.clone(), value);
        }
        for (name, value) in pseudo {
            values.insert((*name).to_owned(), value.clone());
        }
        Ok(Self {
            template,
            values,
            attributes: HashMap::new(),
        })
    }

    /// Records a made resource: what `Ref` gives, and its attributes.
    pub fn made(&mut self, logical_id: &str, reference: String, attributes: &[(&str, String)]) {
        self.values.insert(logical_id.to_owned(), reference);
        for (name, value) in attributes {
            self.attributes
                .insert((logical_id.to_owned(), (*name).to_owned()), value.clone());
        }
    }

    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether a resource with this `Condition` (if any) is made.
    pub fn included(&self, resource: &Value) -> anyhow::Result<bool> {
        match resource.get("Condition").and_then(Value::as_str) {
            None => Ok(true),
            Some(name) => self.condition(name),
        }
    }

    pub fn condition(&self, name: &str) -> anyhow::Result<bool> {
        let expression = self
            .template
            .conditions
            .get(name)
            .ok_or_else(|| anyhow!("no condition {name}"))?;
        self.truth(expression)
            .with_context(|| format!("condition {name}"))
    }

    fn truth(&self, expression: &Value) -> anyhow::Result<bool> {
        let (function, args) = function(expression)
            .ok_or_else(|| anyhow!("not a condition function: {expression}"))?;
        let list = |n: usize| -> anyhow::Result<&Vec<Value>> {
            args.as_array()
                .filter(|a| n == 0 || a.len() == n)
                .ok_or_else(|| anyhow!("{function}: bad arguments {args}"))
        };
        match function {
            "Fn::Equals" => {
                let pair = list(2)?;
                Ok(self.string(&pair[0])? == self.string(&pair[1])?)
            }
            "Fn::Not" => Ok(!self.truth(&list(1)?[0])?),
            "Fn::And" => list(0)?
                .iter()
                .try_fold(true, |all, c| Ok(all && self.truth(c)?)),
            "Fn::Or" => list(0)?
                .iter()
                .try_fold(false, |any, c| Ok(any || self.truth(c)?)),
            "Condition" => self.condition(args.as_str().unwrap_or_default()),
            other => bail!("{other} is not a condition function"),
        }
    }

    /// A value resolved to a string (numbers and booleans as CloudFormation writes them).
    pub fn string(&self, value: &Value) -> anyhow::Result<String> {
        let resolved = self
            .resolve(value)?
            .ok_or_else(|| anyhow!("AWS::NoValue where a value is needed"))?;
        scalar(&resolved)
    }

    /// A value with every intrinsic function in it evaluated; `None` for `AWS::NoValue`.
    pub fn resolve(&self, value: &Value) -> anyhow::Result<Option<Value>> {
        if let Some((function, args)) = function(value) {
            return self.call(function, args);
        }
        Ok(Some(match value {
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(v) = self.resolve(item)? {
                        out.push(v);
                    }
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    if let Some(v) = self.resolve(v)? {
                        out.insert(k.clone(), v);
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }))
    }

    fn call(&self, function: &str, args: &Value) -> anyhow::Result<Option<Value>> {
        let list = || {
            args.as_array()
                .ok_or_else(|| anyhow!("{function}: expected a list, got {args}"))
        };
        let resolved_list = |v: &Value| -> anyhow::Result<Vec<Value>> {
            match self.resolve(v)? {
                Some(Value::Array(items)) => Ok(items),
                other => bail!("{function}: expected a list, got {other:?}"),
            }
        };
        Ok(Some(Value::String(match function {
            "Ref" => {
                let name = args.as_str().unwrap_or_default();
                if name == NO_VALUE {
                    return Ok(None);
                }
                self.values
                    .get(name)
                    .cloned()
                    .ok_or_else(|| anyhow!("Ref {name}: no such parameter, or not made yet"))?
            }
            "Fn::GetAtt" => {
                let pair = list()?;
                let resource = scalar(&pair[0])?;
                let attribute = self.string(pair.get(1).unwrap_or(&Value::Null))?;
                self.attribute(&resource, &attribute)?
            }
            "Fn::Sub" => match args {
                Value::String(text) => self.substitute(text, &HashMap::new())?,
                Value::Array(pair) if pair.len() == 2 => {
                    let mut variables = HashMap::new();
                    for (k, v) in pair[1].as_object().into_iter().flatten() {
                        variables.insert(k.clone(), self.string(v)?);
                    }
                    self.substitute(&scalar(&pair[0])?, &variables)?
                }
                _ => bail!("Fn::Sub: bad arguments {args}"),
            },
            "Fn::Join" => {
                let pair = list()?;
                let separator = scalar(&pair[0])?;
                resolved_list(&pair[1])?
                    .iter()
                    .map(scalar)
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .join(&separator)
            }
            "Fn::Split" => {
                let pair = list()?;
                let separator = scalar(&pair[0])?;
                let text = self.string(&pair[1])?;
                return Ok(Some(Value::from(
                    text.split(separator.as_str()).collect::<Vec<_>>(),
                )));
            }
            "Fn::Select" => {
                let pair = list()?;
                let index: usize = self.string(&pair[0])?.parse()?;
                let items = resolved_list(&pair[1])?;
                return items
                    .get(index)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| anyhow!("Fn::Select: no item {index}"));
            }
            "Fn::If" => {
                let triple = list()?;
                let branch = if self.condition(&scalar(&triple[0])?)? {
                    &triple[1]
                } else {
                    &triple[2]
                };
                return self.resolve(branch);
            }
            other => bail!("{other} is not supported here"),
        })))
    }

    fn attribute(&self, resource: &str, attribute: &str) -> anyhow::Result<String> {
        self.attributes
            .get(&(resource.to_owned(), attribute.to_owned()))
            .cloned()
            .ok_or_else(|| anyhow!("GetAtt {resource}.{attribute}: unknown, or not made yet"))
    }

    /// `${Name}`, `${Resource.Attribute}` and `${!Literal}` in `text`.
    fn substitute(
        &self,
        text: &str,
        variables: &HashMap<String, String>,
    ) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| anyhow!("Fn::Sub: unclosed ${{ in {text:?}"))?
                + start;
            let name = &rest[start + 2..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = variables.get(name).or_else(|| self.values.get(name)) {
                out.push_str(v);
            } else if let Some((resource, attribute)) = name.split_once('.') {
                out.push_str(&self.attribute(resource, attribute)?);
            } else {
                bail!("Fn::Sub: ${{{name}}} is unknown, or not made yet");
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// `{"Ref": x}` or `{"Fn::Name": args}`: the function and its arguments.
fn function(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let (k, v) = map.iter().next()?;
    (k == "Ref" || k == "Condition" || k.starts_with("Fn::")).then_some((k.as_str(), v))
}

/// A resolved scalar as a string.
pub fn scalar(value: &Value) -> anyhow::Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => bail!("expected a scalar, got {other}"),
    }
}

/// An `AWS::Serverless::Function`, with the `Globals` applied.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The last part of `CodeUri`: the cargo package, so the binary's name.
    pub binary: String,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub environment: Vec<(String, String)>,
    pub sqs_sources: Vec<SqsSource>,
    /// Whether it has `HttpApi` events (the API's routes).
    pub http_api: bool,
}

/// An `SQS` event of a function: its event source mapping.
#[derive(Debug, Clone)]
pub struct SqsSource {
    pub queue_arn: String,
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds`: how long a batch may gather before the invocation.
    pub batching_window: Duration,
    pub report_batch_item_failures: bool,
    pub maximum_concurrency: Option<u32>,
}

impl FunctionSpec {
    pub fn read(logical_id: &str, resource: &Value, resolver: &Resolver) -> anyhow::Result<Self> {
        let globals = &resolver.template.globals["Function"];
        let properties = &resource["Properties"];
        let property = |name: &str| {
            properties
                .get(name)
                .filter(|v| !v.is_null())
                .or_else(|| globals.get(name))
        };
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            match property(name) {
                Some(v) => Ok(resolver.string(v)?.parse()?),
                None => Ok(default),
            }
        };
        let code_uri = property("CodeUri")
            .map(|v| resolver.string(v))
            .transpose()?
            .ok_or_else(|| anyhow!("{logical_id} has no CodeUri"))?;
        let binary = code_uri
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();

        let mut environment: Vec<(String, String)> = Vec::new();
        for scope in [globals, properties] {
            for (name, value) in scope["Environment"]["Variables"]
                .as_object()
                .into_iter()
                .flatten()
            {
                let Some(value) = resolver
                    .resolve(value)
                    .with_context(|| format!("{logical_id}: {name}"))?
                else {
                    continue;
                };
                environment.retain(|(n, _)| n != name);
                environment.push((name.clone(), scalar(&value)?));
            }
        }

        let mut sqs_sources = Vec::new();
        let mut http_api = false;
        for (name, event) in properties["Events"].as_object().into_iter().flatten() {
            let p = &event["Properties"];
            match event["Type"].as_str() {
                Some("SQS") => sqs_sources.push(SqsSource {
                    queue_arn: resolver.string(&p["Queue"])?,
                    batch_size: match p.get("BatchSize") {
                        Some(v) => resolver.string(v)?.parse()?,
                        None => 10,
                    },
                    batching_window: Duration::from_secs(
                        match p.get("MaximumBatchingWindowInSeconds") {
                            Some(v) => resolver.string(v)?.parse()?,
                            None => 0,
                        },
                    ),
                    report_batch_item_failures: p["FunctionResponseTypes"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures")),
                    maximum_concurrency: p["ScalingConfig"]
                        .get("MaximumConcurrency")
                        .map(|v| resolver.string(v).and_then(|s| Ok(s.parse()?)))
                        .transpose()?,
                }),
                Some("HttpApi") => http_api = true,
                other => bail!("{logical_id}: event {name} of type {other:?} is not emulated"),
            }
        }
        Ok(Self {
            logical_id: logical_id.to_owned(),
            binary,
            timeout: Duration::from_secs(number("Timeout", 3)?),
            memory_mb: number("MemorySize", 128)? as u32,
            environment,
            sqs_sources,
            http_api,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Sender: { Type: String }
  Level: { Type: String, Default: info, AllowedValues: [info, debug] }
  Count: { Type: Number, Default: 5 }
Conditions:
  HasSender: !Not [!Equals [!Ref Sender, ""]]
Globals:
  Function:
    Timeout: 7
    Environment:
      Variables:
        LEVEL: !Ref Level
        COUNT: !Ref Count
Resources:
  Queue: { Type: AWS::SQS::Queue }
  Group:
    Type: AWS::Scheduler::ScheduleGroup
    Properties:
      Name: !Sub
        - "g-${Id}"
        - Id: !Select [2, !Split ["/", !Ref AWS::StackId]]
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ./functions/dispatch
      Environment:
        Variables:
          QUEUE: !Ref Queue
          ARN: !GetAtt Queue.Arn
          SUB: !Sub "${Queue.Arn}/x ${!Literal}"
          MAYBE: !If [HasSender, !Ref Sender, !Ref AWS::NoValue]
          COUNT: 9
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
            MaximumBatchingWindowInSeconds: 1
            ScalingConfig: { MaximumConcurrency: !Ref Count }
"#;

    fn resolver<'a>(t: &'a Template, sender: &str) -> Resolver<'a> {
        let given = HashMap::from([("Sender".to_owned(), sender.to_owned())]);
        let pseudo = [(
            "AWS::StackId",
            "arn:aws:cloudformation:r:1:stack/s/abc-1".to_owned(),
        )];
        let mut r = Resolver::new(t, &given, &pseudo).unwrap();
        r.made(
            "Queue",
            "https://q/1/Queue".into(),
            &[("Arn", "arn:q".into())],
        );
        r
    }

    #[test]
    fn intrinsic_functions_resolve_as_cloudformation_does() {
        let t = Template::parse(TEMPLATE).unwrap();
        let r = resolver(&t, "a@b.c");
        let group = r
            .resolve(&t.resources["Group"]["Properties"]["Name"])
            .unwrap();
        assert_eq!(group, Some(Value::from("g-abc-1")));
        let f = FunctionSpec::read("Fn", &t.resources["Fn"], &r).unwrap();
        let env: HashMap<_, _> = f.environment.iter().cloned().collect();
        assert_eq!(env["LEVEL"], "info");
        assert_eq!(
            env["COUNT"], "9",
            "the function's own value wins over the global one"
        );
        assert_eq!(env["QUEUE"], "https://q/1/Queue");
        assert_eq!(env["ARN"], "arn:q");
        assert_eq!(env["SUB"], "arn:q/x ${Literal}");
        assert_eq!(env["MAYBE"], "a@b.c");
        assert_eq!(f.binary, "dispatch");
        assert_eq!(f.timeout, Duration::from_secs(7));
        let sqs = &f.sqs_sources[0];
        assert_eq!(sqs.queue_arn, "arn:q");
        assert_eq!((sqs.batch_size, sqs.maximum_concurrency), (10, Some(5)));
        assert_eq!(sqs.batching_window, Duration::from_secs(1));
        assert!(sqs.report_batch_item_failures);

        let without = resolver(&t, "");
        let f = FunctionSpec::read("Fn", &t.resources["Fn"], &without).unwrap();
        assert!(
            f.environment.iter().all(|(n, _)| n != "MAYBE"),
            "AWS::NoValue leaves it out"
        );
    }

    #[test]
    fn a_missing_or_disallowed_parameter_is_named() {
        let t = Template::parse(TEMPLATE).unwrap();
        let err = Resolver::new(&t, &HashMap::new(), &[]).err().unwrap();
        assert!(err.to_string().contains("Sender"), "{err}");
        let given = HashMap::from([
            ("Sender".to_owned(), "x".to_owned()),
            ("Level".to_owned(), "loud".to_owned()),
        ]);
        let err = Resolver::new(&t, &given, &[]).err().unwrap();
        assert!(err.to_string().contains("Level"), "{err}");
    }

    #[test]
    fn a_reference_to_something_not_made_is_an_error() {
        let t = Template::parse(TEMPLATE).unwrap();
        let given = HashMap::from([("Sender".to_owned(), "x".to_owned())]);
        let r = Resolver::new(&t, &given, &[]).unwrap();
        let err = FunctionSpec::read("Fn", &t.resources["Fn"], &r)
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("Queue"), "{err:#}");
    }
}
