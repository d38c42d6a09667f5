//! A `metrics` recorder that writes CloudWatch Embedded Metric Format documents.
//!
//! Recording never waits and never drops a value: counters and gauges are atomics, and a
//! histogram's values go to a lock-free, unbounded bucket (metrics-util's `AtomicBucket`) that
//! the flush after each invocation drains. The crate this replaces (metrics_cloudwatch_embedded
//! 0.8) kept each histogram in a `sync_channel(100)` drained only by that flush, so the 101st
//! value of one invocation blocked the function's only thread for ever (issue 31); its later
//! versions drop what does not fit instead.
//!
//! EMF takes at most 100 values per metric and 100 metrics per document, and one value per
//! dimension: the flush writes one document per label set, and as many documents as a
//! histogram's values need, 100 values each.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use metrics_util::storage::AtomicBucket;
use serde_json::{Map, Value, json};

/// CloudWatch's limits for one EMF document.
const MAX_VALUES_PER_METRIC: usize = 100;
const MAX_METRICS_PER_DOCUMENT: usize = 100;

pub struct EmfRecorder {
    namespace: String,
    /// Dimensions every metric carries (the function's name), before the metric's own labels.
    dimensions: Vec<(String, String)>,
    registry: Registry<Key, AtomicStorage>,
}

/// What one label set measured since the last flush.
#[derive(Default)]
struct Measured {
    metrics: Vec<(String, Unit, Vec<f64>)>,
}

/// A count is written as an integer, as CloudWatch shows it.
fn number(unit: Unit, value: f64) -> Value {
    if unit == Unit::Count && value.fract() == 0.0 && value >= 0.0 && value < 2f64.powi(53) {
        json!(value as u64)
    } else {
        json!(value)
    }
}

impl EmfRecorder {
    pub fn new(namespace: impl Into<String>, dimensions: Vec<(String, String)>) -> Self {
        Self {
            namespace: namespace.into(),
            dimensions,
            registry: Registry::atomic(),
        }
    }

    /// Writes what was recorded since the last flush, one JSON line per document, and starts
    /// again from zero. Nothing recorded meanwhile on another thread is lost: counters are
    /// swapped, buckets drained.
    pub fn flush(&self, mut out: impl Write) -> std::io::Result<()> {
        let mut by_labels: BTreeMap<Vec<(String, String)>, Measured> = BTreeMap::new();
        let labels_of = |key: &Key| -> Vec<(String, String)> {
            key.labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect()
        };
        self.registry.visit_counters(|key, counter| {
            let count = counter.swap(0, Ordering::AcqRel);
            if count > 0 {
                by_labels.entry(labels_of(key)).or_default().metrics.push((
                    key.name().to_owned(),
                    Unit::Count,
                    vec![count as f64],
                ));
            }
        });
        self.registry.visit_gauges(|key, gauge| {
            let value = f64::from_bits(gauge.load(Ordering::Acquire));
            by_labels.entry(labels_of(key)).or_default().metrics.push((
                key.name().to_owned(),
                Unit::Count,
                vec![value],
            ));
        });
        self.registry.visit_histograms(|key, bucket| {
            let mut values = Vec::new();
            bucket.clear_with(|block| values.extend_from_slice(block));
            if !values.is_empty() {
                let unit = if key.name().ends_with("_seconds") {
                    Unit::Seconds
                } else {
                    Unit::Count
                };
                by_labels.entry(labels_of(key)).or_default().metrics.push((
                    key.name().to_owned(),
                    unit,
                    values,
                ));
            }
        });
        let timestamp = jiff::Timestamp::now().as_millisecond();
        for (labels, measured) in by_labels {
            for document in self.documents(timestamp, &labels, measured) {
                serde_json::to_writer(&mut out, &document)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()
    }

    /// The documents of one label set: a metric's values in slices of 100, the n-th slices of
    /// every metric in the n-th documents, at most 100 metrics a document.
    fn documents(
        &self,
        timestamp: i64,
        labels: &[(String, String)],
        measured: Measured,
    ) -> Vec<Value> {
        let mut slices: Vec<(usize, &str, Unit, &[f64])> = Vec::new();
        for (name, unit, values) in &measured.metrics {
            for (n, chunk) in values.chunks(MAX_VALUES_PER_METRIC).enumerate() {
                slices.push((n, name, *unit, chunk));
            }
        }
        slices.sort_by_key(|(n, ..)| *n);
        let mut documents = Vec::new();
        let mut start = 0;
        while start < slices.len() {
            let round = slices[start].0;
            let end = slices[start..]
                .iter()
                .take(MAX_METRICS_PER_DOCUMENT)
                .take_while(|(n, ..)| *n == round)
                .count()
                + start;
            documents.push(self.document(timestamp, labels, &slices[start..end]));
            start = end;
        }
        documents
    }

    fn document(
        &self,
        timestamp: i64,
        labels: &[(String, String)],
        metrics: &[(usize, &str, Unit, &[f64])],
    ) -> Value {
        let mut root = Map::new();
        let mut dimension_names = Vec::new();
        for (name, value) in self.dimensions.iter().chain(labels) {
            dimension_names.push(Value::String(name.clone()));
            root.insert(name.clone(), Value::String(value.clone()));
        }
        let mut definitions = Vec::new();
        for (_, name, unit, values) in metrics {
            definitions.push(json!({"Name": name, "Unit": emf_unit(*unit)}));
            let value = match values {
                [one] if *unit == Unit::Count => number(*unit, *one),
                _ => Value::Array(values.iter().map(|v| number(*unit, *v)).collect()),
            };
            root.insert((*name).to_owned(), value);
        }
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimension_names],
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(root)
    }
}

fn emf_unit(unit: Unit) -> &'static str {
    match unit {
        Unit::Seconds => "Seconds",
        _ => "Count",
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry
            .get_or_create_counter(key, |c: &Arc<AtomicU64>| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry
            .get_or_create_gauge(key, |g: &Arc<AtomicU64>| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry
            .get_or_create_histogram(key, |h: &Arc<AtomicBucket<f64>>| {
                Histogram::from_arc(h.clone())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> EmfRecorder {
        EmfRecorder::new("notify", vec![("function".into(), "dispatch".into())])
    }

    fn flushed(r: &EmfRecorder) -> Vec<Value> {
        let mut out = Vec::new();
        r.flush(&mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn thousands_of_values_in_one_invocation_are_all_written_100_a_document() {
        let r = recorder();
        let key = Key::from_parts(
            "notify_provider_latency_seconds",
            vec![metrics::Label::new("channel", "email")],
        );
        let h = r.register_histogram(&key, &Metadata::new("t", metrics::Level::INFO, None));
        let c = r.register_counter(
            &Key::from_parts(
                "notify_deliveries_total",
                vec![metrics::Label::new("channel", "email")],
            ),
            &Metadata::new("t", metrics::Level::INFO, None),
        );
        for i in 0..2_050 {
            h.record(i as f64 / 1000.0);
            c.increment(1);
        }
        let docs = flushed(&r);
        assert_eq!(docs.len(), 21, "{docs:?}");
        let mut values = Vec::new();
        for d in &docs {
            assert_eq!(d["function"], "dispatch");
            assert_eq!(d["channel"], "email");
            let directive = &d["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Dimensions"], json!([["function", "channel"]]));
            let slice = d["notify_provider_latency_seconds"].as_array().unwrap();
            assert!(slice.len() <= MAX_VALUES_PER_METRIC);
            values.extend(slice.iter().map(|v| v.as_f64().unwrap()));
        }
        assert_eq!(values.len(), 2_050);
        // The counter is written once, in the first document.
        let counts: Vec<&Value> = docs
            .iter()
            .filter_map(|d| d.get("notify_deliveries_total"))
            .collect();
        assert_eq!(counts, [&json!(2050)]);
        assert!(flushed(&r).is_empty(), "a flush starts again from zero");
    }

    #[test]
    fn each_label_set_is_its_own_document_and_unchanged_counters_are_left_out() {
        let r = recorder();
        let meta = Metadata::new("t", metrics::Level::INFO, None);
        for (outcome, n) in [("sent", 3), ("failed", 1)] {
            let key = Key::from_parts(
                "notify_deliveries_total",
                vec![
                    metrics::Label::new("channel", "sms"),
                    metrics::Label::new("outcome", outcome),
                ],
            );
            r.register_counter(&key, &meta).increment(n);
        }
        let _ = r.register_counter(&Key::from_name("notify_fanout_pages_total"), &meta);
        let docs = flushed(&r);
        assert_eq!(docs.len(), 2, "{docs:?}");
        let sent = docs.iter().find(|d| d["outcome"] == "sent").unwrap();
        assert_eq!(sent["notify_deliveries_total"], 3);
        assert_eq!(
            sent["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function", "channel", "outcome"]])
        );
    }

    #[test]
    fn more_than_100_metrics_of_one_label_set_take_more_documents() {
        let r = recorder();
        let meta = Metadata::new("t", metrics::Level::INFO, None);
        for i in 0..150 {
            r.register_counter(&Key::from_name(format!("m{i}")), &meta)
                .increment(1);
        }
        let docs = flushed(&r);
        assert_eq!(docs.len(), 2);
        let defined: usize = docs
            .iter()
            .map(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(defined, 150);
    }
}
