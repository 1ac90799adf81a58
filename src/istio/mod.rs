//! The Istio model: VirtualService manifests, typed fault/retry/timeout specs checked
//! with Istio's validation rules, and changes as guarded RFC 6902 patches with exact
//! inverses recorded on the object.
//!
//! Pure: no async, no network, no printing. `cluster` and `mesh` take what this module
//! plans and carry it out on their target.

pub mod manifest;
pub mod patch;
pub mod schema;
pub mod spec;
pub mod types;
pub mod validate;

pub use manifest::{Document, ManifestError, Source};
pub use patch::{
    ANNOTATION, ClearPlan, DrillInfo, DrillRecord, Owner, Plan, PlanError, RecordMeta, Stacking,
    owner_gone, plan_change, plan_clear, read_record,
};
pub use spec::{AbortCode, AbortSpec, Change, DelaySpec, FaultKind, RetrySpec, RouteSelector};
pub use types::{GrpcStatus, HttpStatus, IstioDuration, Percentage, RetryOn, ValueError};
pub use validate::{
    Issue, Severity, validate, validate_destination_rule, validate_gateway,
    validate_virtual_service,
};

/// A fresh run id: 12 hex digits, random.
pub fn new_run_id() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}
