//! The AWS path, one test binary (the SDK is linked once): the Lambda handlers with real SDK
//! clients against moto, behind the fault proxy where AWS's faults matter, and the SAM template.

mod adapters;
mod api_keys;
mod aws_local;
mod binaries;
mod calls;
mod chaos;
mod chores;
mod console;
mod faults;
mod feedback;
mod flow;
mod groups;
mod inbox;
mod job_claims;
mod lists;
mod metrics;
mod push;
mod retention;
mod sam_template;
mod schedule;
mod shipped;
mod suppressions;
mod webhooks;
