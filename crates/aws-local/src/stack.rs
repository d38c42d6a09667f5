//! The resources of `template.yaml`, made in the emulator as CloudFormation would make them:
//! the DynamoDB table with its indexes and TTL, the queues with their redrive policies, the
//! secret with a generated value, the schedule group and the recurring schedule, the SES
//! configuration set, SNS topics and their subscriptions. Roles get an ARN (moto does not
//! enforce IAM). The functions are read, with the environment the template
//! gives each one; running them is `lambda`'s work.

use std::collections::HashMap;

use anyhow::{Context, anyhow, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_types::SdkConfig;
use serde_json::Value;

use crate::emulator::{ACCOUNT, REGION};
use crate::template::{FunctionSpec, Resolver, Template, scalar};

/// How this stack differs from a deployment of the template with its defaults.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// The stack's name: a prefix of the resources' names.
    pub name: String,
    /// Parameter values (the others take their defaults).
    pub parameters: HashMap<String, String>,
    /// A queue's `VisibilityTimeout` by logical id, instead of the template's (tests that wait
    /// for a message to come back).
    pub visibility_timeouts: HashMap<String, u32>,
    /// A queue's redrive `maxReceiveCount` by logical id, instead of the template's.
    pub max_receive_counts: HashMap<String, u32>,
    /// A secret's value by logical id, instead of a generated one.
    pub secret_values: HashMap<String, String>,
    /// Variables set on every function over the template's.
    pub environment: Vec<(String, String)>,
}

/// The made stack.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    /// Queue ARN → URL: what event source mappings and schedule targets name.
    pub queue_urls: HashMap<String, String>,
    /// Logical id → what `Ref` gives (table name, queue URL, secret ARN, ...).
    pub refs: HashMap<String, String>,
    /// Secret logical id → its value.
    pub secrets: HashMap<String, String>,
    pub schedule_groups: Vec<String>,
    pub functions: Vec<FunctionSpec>,
    /// Resources of types this does not emulate (alarms, topics), by logical id.
    pub not_emulated: Vec<(String, String)>,
}

impl Stack {
    pub fn function(&self, logical_id: &str) -> anyhow::Result<&FunctionSpec> {
        self.functions
            .iter()
            .find(|f| f.logical_id == logical_id)
            .ok_or_else(|| anyhow!("the template has no function {logical_id}"))
    }

    /// The queue URL a logical id names.
    pub fn queue_url(&self, logical_id: &str) -> anyhow::Result<&str> {
        self.refs
            .get(logical_id)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the template has no resource {logical_id}"))
    }

    /// Makes every resource of `template` through `sdk` (the emulator, straight).
    pub async fn create(
        sdk: &SdkConfig,
        template: &Template,
        options: &StackOptions,
    ) -> anyhow::Result<Self> {
        let name = if options.name.is_empty() {
            "notify-local"
        } else {
            &options.name
        };
        let stack_id = format!(
            "arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/{}",
            uuid()
        );
        let pseudo = [
            ("AWS::StackName", name.to_owned()),
            ("AWS::StackId", stack_id),
            ("AWS::Region", REGION.to_owned()),
            ("AWS::AccountId", ACCOUNT.to_owned()),
            ("AWS::Partition", "aws".to_owned()),
            ("AWS::URLSuffix", "amazonaws.com".to_owned()),
        ];
        let mut resolver = Resolver::new(template, &options.parameters, &pseudo)?;
        let mut stack = Stack {
            name: name.to_owned(),
            queue_urls: HashMap::new(),
            refs: HashMap::new(),
            secrets: HashMap::new(),
            schedule_groups: Vec::new(),
            functions: Vec::new(),
            not_emulated: Vec::new(),
        };
        let physical = |logical: &str| format!("{name}-{logical}");
        let made = |resolver: &mut Resolver,
                    stack: &mut Stack,
                    id: &str,
                    r: String,
                    a: &[(&str, String)]| {
            stack.refs.insert(id.to_owned(), r.clone());
            resolver.made(id, r, a);
        };

        for (id, resource) in template.of_type("AWS::IAM::Role") {
            if resolver.included(resource)? {
                let role = physical(id);
                let arn = format!("arn:aws:iam::{ACCOUNT}:role/{role}");
                made(&mut resolver, &mut stack, id, role, &[("Arn", arn)]);
            }
        }

        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        for (id, resource) in template.of_type("AWS::DynamoDB::Table") {
            let Some(p) = properties(&resolver, resource)? else {
                continue;
            };
            let table = named(&p, "TableName", || physical(id));
            let arn = create_table(&ddb, &table, &p)
                .await
                .with_context(|| format!("create table {id}"))?;
            made(&mut resolver, &mut stack, id, table, &[("Arn", arn)]);
        }

        // Dead-letter queues before the queues whose redrive policy names them.
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut queues: Vec<(&str, &Value)> = template.of_type("AWS::SQS::Queue").collect();
        queues.sort_by_key(|(_, q)| q["Properties"].get("RedrivePolicy").is_some());
        for (id, resource) in queues {
            let Some(p) = properties(&resolver, resource)? else {
                continue;
            };
            let queue = named(&p, "QueueName", || physical(id));
            let mut p = p;
            if let Some(count) = options.max_receive_counts.get(id)
                && let Some(policy) = p.get_mut("RedrivePolicy")
            {
                policy["maxReceiveCount"] = Value::from(*count);
            }
            let visibility = options.visibility_timeouts.get(id).copied();
            let (url, arn) = create_queue(&sqs, &queue, &p, visibility)
                .await
                .with_context(|| format!("create queue {id}"))?;
            stack.queue_urls.insert(arn.clone(), url.clone());
            made(
                &mut resolver,
                &mut stack,
                id,
                url.clone(),
                &[("Arn", arn), ("QueueName", queue), ("QueueUrl", url)],
            );
        }

        let secrets = aws_sdk_secretsmanager::Client::new(sdk);
        for (id, resource) in template.of_type("AWS::SecretsManager::Secret") {
            let Some(p) = properties(&resolver, resource)? else {
                continue;
            };
            let value = match (options.secret_values.get(id), p["SecretString"].as_str()) {
                (Some(v), _) => v.clone(),
                (None, Some(v)) => v.to_owned(),
                (None, None) => generate_secret(&p["GenerateSecretString"])?,
            };
            let arn = secrets
                .create_secret()
                .name(
                    p["Name"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| physical(id)),
                )
                .secret_string(&value)
                .send()
                .await
                .with_context(|| format!("create secret {id}"))?
                .arn
                .unwrap_or_default();
            stack.secrets.insert(id.to_owned(), value);
            made(&mut resolver, &mut stack, id, arn, &[]);
        }

        let scheduler = aws_sdk_scheduler::Client::new(sdk);
        for (id, resource) in template.of_type("AWS::Scheduler::ScheduleGroup") {
            let Some(p) = properties(&resolver, resource)? else {
                continue;
            };
            let group = named(&p, "Name", || physical(id));
            let arn = scheduler
                .create_schedule_group()
                .name(&group)
                .send()
                .await
                .with_context(|| format!("create schedule group {id}"))?
                .schedule_group_arn;
            stack.schedule_groups.push(group.clone());
            made(&mut resolver, &mut stack, id, group, &[("Arn", arn)]);
        }
        for (id, resource) in template.of_type("AWS::Scheduler::Schedule") {
            let Some(p) = properties(&resolver, resource)? else {
                continue;
            };
            let schedule = named(&p, "Name", || physical(id));
            let group = p["GroupName"].as_str().unwrap_or("default").to_owned();
            create_schedule(&scheduler, &schedule, &group, &p)
                .await
                .with_context(|| format!("create schedule {id}"))?;
            if !stack.schedule_groups.contains(&group) {
                stack.schedule_groups.push(group);
            }
            made(&mut resolver, &mut stack, id, schedule, &[]);
        }

        let sesv2 = aws_sdk_sesv2::Client::new(sdk);
        for (id, resource) in template.of_type("AWS::SES::ConfigurationSet") {
            let Some(p) = properties(&resolver, resource)? else {
                continue;
            };
            let set = named(&p, "Name", || physical(id));
            sesv2
                .create_configuration_set()
                .configuration_set_name(&set)
                .send()
                .await
                .with_context(|| format!("create configuration set {id}"))?;
            made(&mut resolver, &mut stack, id, set, &[]);
        }

        // moto's SNS delivers what is published to a topic to its SQS subscribers, as SNS does.
        let sns = aws_sdk_sns::Client::new(sdk);
        for (id, resource) in template.of_type("AWS::SNS::Topic") {
            let Some(p) = properties(&resolver, resource)? else {
                continue;
            };
            let topic = named(&p, "TopicName", || physical(id));
            let arn = sns
                .create_topic()
                .name(&topic)
                .send()
                .await
                .with_context(|| format!("create topic {id}"))?
                .topic_arn
                .unwrap_or_default();
            made(&mut resolver, &mut stack, id, arn, &[("TopicName", topic)]);
        }
        for (id, resource) in template.of_type("AWS::SNS::Subscription") {
            let Some(p) = properties(&resolver, resource)? else {
                continue;
            };
            let arn = sns
                .subscribe()
                .topic_arn(scalar(&p["TopicArn"])?)
                .protocol(scalar(&p["Protocol"])?)
                .endpoint(scalar(&p["Endpoint"])?)
                .attributes(
                    "RawMessageDelivery",
                    p.get("RawMessageDelivery")
                        .map(scalar)
                        .transpose()?
                        .unwrap_or_else(|| "false".into()),
                )
                .return_subscription_arn(true)
                .send()
                .await
                .with_context(|| format!("subscribe {id}"))?
                .subscription_arn
                .unwrap_or_default();
            made(&mut resolver, &mut stack, id, arn, &[]);
        }

        // The verified sender domain of SES: what a deployment sets up once, outside the stack.
        if let Some(from) = resolver.parameter("SenderAddress")
            && let Some((_, domain)) = from.rsplit_once('@')
        {
            sesv2
                .create_email_identity()
                .email_identity(domain)
                .send()
                .await
                .with_context(|| format!("verify {domain} in SES"))?;
        }

        for (id, resource) in template.of_type("AWS::Serverless::Function") {
            if !resolver.included(resource)? {
                continue;
            }
            let function = physical(id);
            let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}");
            made(&mut resolver, &mut stack, id, function, &[("Arn", arn)]);
        }
        // SAM's implicit HTTP API, made for functions with an `HttpApi` event and no `ApiId`:
        // `api_gateway` plays it; its id only appears in URLs the template builds.
        let implicit_api = template
            .of_type("AWS::Serverless::Function")
            .flat_map(|(_, f)| f["Properties"]["Events"].as_object().into_iter().flatten())
            .any(|(_, event)| event["Type"] == "HttpApi" && event["Properties"]["ApiId"].is_null());
        if implicit_api {
            made(
                &mut resolver,
                &mut stack,
                "ServerlessHttpApi",
                format!("{name}local"),
                &[],
            );
        }
        for (id, resource) in template.of_type("AWS::Serverless::Function") {
            if !resolver.included(resource)? {
                continue;
            }
            let mut spec = FunctionSpec::read(id, resource, &resolver)
                .with_context(|| format!("function {id}"))?;
            for (name, value) in &options.environment {
                spec.environment.retain(|(n, _)| n != name);
                spec.environment.push((name.clone(), value.clone()));
            }
            stack.functions.push(spec);
        }

        for (id, resource) in &template.resources {
            let kind = resource["Type"].as_str().unwrap_or_default();
            if !stack.refs.contains_key(id) && resolver.included(resource)? {
                stack.not_emulated.push((id.clone(), kind.to_owned()));
            }
        }
        Ok(stack)
    }
}

/// A resource's properties with its intrinsic functions evaluated; `None` when its `Condition`
/// leaves it out.
fn properties(resolver: &Resolver, resource: &Value) -> anyhow::Result<Option<Value>> {
    if !resolver.included(resource)? {
        return Ok(None);
    }
    Ok(Some(
        resolver
            .resolve(&resource["Properties"])?
            .unwrap_or_default(),
    ))
}

/// The name a property gives, else the one CloudFormation would make up.
fn named(p: &Value, property: &str, default: impl FnOnce() -> String) -> String {
    p[property]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(default)
}

async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    p: &Value,
) -> anyhow::Result<String> {
    let key_schema = |list: &Value| -> anyhow::Result<Vec<KeySchemaElement>> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                Ok(KeySchemaElement::builder()
                    .attribute_name(scalar(&k["AttributeName"])?)
                    .key_type(KeyType::from(scalar(&k["KeyType"])?.as_str()))
                    .build()?)
            })
            .collect()
    };
    let mut request = ddb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::from(
            p["BillingMode"].as_str().unwrap_or("PROVISIONED"),
        ))
        .set_key_schema(Some(key_schema(&p["KeySchema"])?));
    for a in p["AttributeDefinitions"].as_array().into_iter().flatten() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(scalar(&a["AttributeName"])?)
                .attribute_type(ScalarAttributeType::from(
                    scalar(&a["AttributeType"])?.as_str(),
                ))
                .build()?,
        );
    }
    for index in p["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
        let projection = &index["Projection"];
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(scalar(&index["IndexName"])?)
                .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            projection["ProjectionType"].as_str().unwrap_or("ALL"),
                        ))
                        .set_non_key_attributes(projection["NonKeyAttributes"].as_array().map(
                            |a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(str::to_owned))
                                    .collect()
                            },
                        ))
                        .build(),
                )
                .build()?,
        );
    }
    let arn = request
        .send()
        .await?
        .table_description
        .and_then(|d| d.table_arn)
        .unwrap_or_default();
    if let Some(ttl) = p.get("TimeToLiveSpecification") {
        ddb.update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(scalar(&ttl["AttributeName"])?)
                    .enabled(ttl["Enabled"] == true || ttl["Enabled"] == "true")
                    .build()?,
            )
            .send()
            .await?;
    }
    Ok(arn)
}

/// The queue's URL and ARN.
async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    p: &Value,
    visibility: Option<u32>,
) -> anyhow::Result<(String, String)> {
    let mut request = sqs.create_queue().queue_name(queue);
    for name in [
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "MaximumMessageSize",
        "ReceiveMessageWaitTimeSeconds",
        "FifoQueue",
        "ContentBasedDeduplication",
    ] {
        if let Some(v) = p.get(name) {
            request = request.attributes(QueueAttributeName::from(name), scalar(v)?);
        }
    }
    if let Some(v) = visibility {
        request = request.attributes(QueueAttributeName::VisibilityTimeout, v.to_string());
    }
    if let Some(policy) = p.get("RedrivePolicy") {
        // CloudFormation takes an object; SQS, a JSON string.
        let policy = match policy {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    let url = request.send().await?.queue_url.unwrap_or_default();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| anyhow!("no ARN for queue {queue}"))?;
    Ok((url, arn))
}

async fn create_schedule(
    scheduler: &aws_sdk_scheduler::Client,
    name: &str,
    group: &str,
    p: &Value,
) -> anyhow::Result<()> {
    let target = &p["Target"];
    scheduler
        .create_schedule()
        .name(name)
        .group_name(group)
        .schedule_expression(scalar(&p["ScheduleExpression"])?)
        .flexible_time_window(
            FlexibleTimeWindow::builder()
                .mode(FlexibleTimeWindowMode::from(
                    p["FlexibleTimeWindow"]["Mode"].as_str().unwrap_or("OFF"),
                ))
                .build()?,
        )
        .target(
            Target::builder()
                .arn(scalar(&target["Arn"])?)
                .role_arn(scalar(&target["RoleArn"])?)
                .set_input(target["Input"].as_str().map(str::to_owned))
                .build()?,
        )
        .send()
        .await?;
    Ok(())
}

/// A value as `GenerateSecretString` makes it: `PasswordLength` characters (32 by default),
/// letters and digits, and punctuation unless `ExcludePunctuation`.
fn generate_secret(spec: &Value) -> anyhow::Result<String> {
    let length = spec["PasswordLength"].as_u64().unwrap_or(32) as usize;
    let mut alphabet: Vec<u8> = (b'a'..=b'z')
        .chain(b'A'..=b'Z')
        .chain(b'0'..=b'9')
        .collect();
    if spec["ExcludePunctuation"] != true {
        alphabet.extend(b"!#$%&()*+,-./:;<=>?@[]^_{|}~");
    }
    let excluded = spec["ExcludeCharacters"].as_str().unwrap_or_default();
    alphabet.retain(|c| !excluded.as_bytes().contains(c));
    if alphabet.is_empty() || length == 0 {
        bail!("GenerateSecretString leaves nothing to draw from");
    }
    let mut out = String::with_capacity(length);
    let mut buf = [0u8; 1];
    while out.len() < length {
        getrandom::fill(&mut buf).map_err(|e| anyhow!("getrandom: {e}"))?;
        // Rejection sampling: no character more likely than another.
        let limit = 256 - 256 % alphabet.len();
        if (buf[0] as usize) < limit {
            out.push(alphabet[buf[0] as usize % alphabet.len()] as char);
        }
    }
    Ok(out)
}

fn uuid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
