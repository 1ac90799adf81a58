//! The `-f FILE` target: a manifest file, read and never written. A change is planned
//! on the VirtualService in the file and returned; the caller prints the result.

use std::path::{Path, PathBuf};

use json_patch::Patch;
use serde_json::Value;

use super::{Changed, Cleared, Error};
use crate::istio::manifest::{self, Document};
use crate::istio::{
    Change, DrillInfo, PlanError, RecordMeta, RouteSelector, plan_change, plan_clear, read_record,
    validate_virtual_service,
};

/// A manifest file holding one or more VirtualServices.
#[derive(Debug, Clone)]
pub struct FileTarget {
    pub path: PathBuf,
    docs: Vec<Document>,
}

impl FileTarget {
    /// Reads the file (YAML or JSON, one or more documents).
    pub fn open(path: &Path) -> Result<Self, Error> {
        let docs = manifest::read_file(path).map_err(|e| Error::Input(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            docs,
        })
    }

    /// Objects that did not come from one file (a mesh file's VirtualServices, for a
    /// dry run): `label` names them in messages.
    pub fn from_values(label: &str, values: Vec<Value>) -> Self {
        let docs = values
            .into_iter()
            .map(|v| Document::from_value(manifest::Source(label.to_string()), v))
            .collect();
        Self {
            path: PathBuf::from(label),
            docs,
        }
    }

    /// The VirtualService named `name` (or the only one, or the only one in `ns`),
    /// checked with Istio's validation rules.
    fn pick(&self, name: Option<&str>, ns: Option<&str>) -> Result<&Document, Error> {
        let doc = pick_virtual_service(&self.docs, name, ns, &self.path)?;
        let issues = validate_virtual_service(doc);
        // Only Istio's errors: a warning (or what only Envoy rejects) is the
        // cluster's to judge, and `meshdrill validate` shows it.
        if issues.iter().any(|i| i.is_error()) {
            let list: Vec<String> = issues
                .iter()
                .filter(|i| i.is_error())
                .map(|i| format!("  {i}"))
                .collect();
            return Err(Error::Input(format!(
                "{}: VirtualService {} is not valid; nothing was changed:\n{}",
                self.path.display(),
                doc.name(),
                list.join("\n")
            )));
        }
        Ok(doc)
    }

    /// A plan error, located at the line of the field it is about.
    fn located(doc: &Document, e: PlanError) -> Error {
        let at = match e {
            PlanError::BadRecord { .. } => doc.locate("/metadata/annotations/meshdrill.io~1drill"),
            _ => doc.locate("/spec/http"),
        };
        Error::Input(format!("{at}: {e}"))
    }

    pub(super) fn plan(
        &self,
        name: &str,
        ns: Option<&str>,
        selector: &RouteSelector,
        change: Option<&Change>,
        meta: &RecordMeta,
    ) -> Result<Changed, Error> {
        let doc = self.pick(Some(name).filter(|n| !n.is_empty()), ns)?;
        let namespace = doc.namespace().unwrap_or("default").to_string();
        match change {
            Some(c) => {
                let plan = plan_change(&doc.value, selector, c, meta)
                    .map_err(|e| Self::located(doc, e))?;
                Ok(Changed {
                    namespace,
                    object: plan.after,
                    patch: plan.patch,
                    routes: plan.routes,
                    warnings: plan.warnings,
                    record: Some(plan.record),
                    envoy: None,
                })
            }
            None => {
                let (object, patch, record, warnings) =
                    match plan_clear(&doc.value, meta.force).map_err(|e| Self::located(doc, e))? {
                        Some(p) => (p.after, p.patch, Some(p.record), p.overwritten),
                        None => (doc.value.clone(), Patch(Vec::new()), None, Vec::new()),
                    };
                Ok(Changed {
                    namespace,
                    object,
                    patch,
                    routes: Vec::new(),
                    warnings,
                    record,
                    envoy: None,
                })
            }
        }
    }

    pub(super) fn clear(
        &self,
        name: &str,
        ns: Option<&str>,
        force: bool,
    ) -> Result<Cleared, Error> {
        let doc = self.pick(Some(name).filter(|n| !n.is_empty()), ns)?;
        Ok(
            match plan_clear(&doc.value, force).map_err(|e| Self::located(doc, e))? {
                Some(p) => Cleared::Restored {
                    object: p.after,
                    patch: p.patch,
                    record: p.record,
                    overwritten: p.overwritten,
                },
                None => Cleared::Nothing {
                    object: doc.value.clone(),
                },
            },
        )
    }

    pub(super) fn current(&self, name: &str, ns: Option<&str>) -> Result<Value, Error> {
        Ok(self
            .pick(Some(name).filter(|n| !n.is_empty()), ns)?
            .value
            .clone())
    }

    pub(super) fn drills(&self, ns: Option<&str>) -> Vec<DrillInfo> {
        self.docs
            .iter()
            .filter(|d| d.is_virtual_service())
            .filter(|d| ns.is_none_or(|n| d.namespace().unwrap_or("default") == n))
            .filter_map(|d| {
                let record = match read_record(&d.value) {
                    Ok(None) => return None,
                    Ok(Some(r)) => Ok(r),
                    Err(e) => Err(e.to_string()),
                };
                Some(DrillInfo {
                    namespace: d.namespace().unwrap_or("default").to_string(),
                    name: d.name().to_string(),
                    record,
                })
            })
            .collect()
    }
}

/// Picks the VirtualService named `name` (or the only one) from a file's documents.
pub fn pick_virtual_service<'a>(
    docs: &'a [Document],
    name: Option<&str>,
    ns: Option<&str>,
    file: &Path,
) -> Result<&'a Document, Error> {
    let vss: Vec<&Document> = docs.iter().filter(|d| d.is_virtual_service()).collect();
    let names = || {
        vss.iter()
            .map(|d| d.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found: Vec<&&Document> = vss
        .iter()
        .filter(|d| {
            name.is_none_or(|n| d.name() == n)
                && ns.is_none_or(|n| d.namespace().is_none_or(|dn| dn == n))
        })
        .collect();
    match (found.as_slice(), name) {
        ([d], _) => Ok(d),
        ([], None) if !vss.is_empty() => Err(Error::Input(format!(
            "{}: no VirtualService in namespace {:?}; the file has: {}",
            file.display(),
            ns.unwrap_or_default(),
            names()
        ))),
        ([], _) if vss.is_empty() => Err(Error::Input(format!(
            "{}: no VirtualService in this file",
            file.display()
        ))),
        ([], Some(n)) => Err(Error::Input(format!(
            "{}: no VirtualService named {n:?}; the file has: {}",
            file.display(),
            names()
        ))),
        (_, _) => Err(Error::Input(format!(
            "{}: several VirtualServices ({}); name one: meshdrill ... <VS> -f {}",
            file.display(),
            names(),
            file.display()
        ))),
    }
}
