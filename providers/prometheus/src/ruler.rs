//! The ruler backends: the configuration API of a Mimir or Cortex ruler
//! (`GET <prefix>/config/v1/rules[/{namespace}]`, `POST
//! <prefix>/config/v1/rules/{namespace}`, `DELETE
//! <prefix>/config/v1/rules/{namespace}/{group}`), documented at
//! <https://grafana.com/docs/mimir/latest/references/http-api/#ruler>, or of
//! a Loki ruler (the same operations under `/loki/api/v1/rules`,
//! <https://grafana.com/docs/loki/latest/reference/loki-http-api/#ruler>),
//! and their Prometheus-compatible rule state for rule health.
//!
//! Answers follow Mimir's `pkg/ruler/api.go` and Loki's
//! `pkg/ruler/base/api.go` (both descend from Cortex's): YAML maps of
//! namespace to groups in rule-file form, `404 no rule groups found` when a
//! tenant or namespace has none, `202 Accepted` with `{"status":"success"}`
//! on writes.

use std::collections::BTreeMap;

use plumb_model::ProviderError;
use reqwest::{Method, Url};
use serde_json::Value;

use crate::http::Client;
use crate::prometheus::{decode, RulesData};
use crate::rules::{self, Dialect, Group};

pub struct Ruler<'a> {
    pub client: &'a Client,
    /// The configuration API's URL (`…/config/v1/rules`, `…/loki/api/v1/rules`).
    pub config_url: String,
    /// The rule state's URL (`…/api/v1/rules`).
    pub state_url: String,
    pub dialect: Dialect,
}

impl Ruler<'_> {
    /// The configuration URL with each extra segment escaped.
    pub fn url(&self, segments: &[&str]) -> Result<String, ProviderError> {
        let mut url = Url::parse(&self.config_url).map_err(|e| ProviderError::Config(format!("ruler_url: {e}")))?;
        if let Ok(mut path) = url.path_segments_mut() {
            for s in segments {
                path.push(s);
            }
        }
        Ok(url.to_string())
    }

    /// Every namespace and its groups; empty on `404 no rule groups found`.
    pub async fn list(&self, namespace: Option<&str>) -> Result<BTreeMap<String, Vec<Group>>, ProviderError> {
        let url = self.url(namespace.as_slice())?;
        let answer = self.client.send(Method::GET, &url, None, &[404]).await?;
        if answer.status.as_u16() == 404 {
            return Ok(BTreeMap::new());
        }
        let request = format!("GET {url}");
        let map: BTreeMap<String, Value> = serde_yaml_ng::from_str(&answer.body).map_err(|e| ProviderError::Api {
            request: request.clone(),
            status: Some(answer.status.as_u16()),
            message: format!("unexpected answer: {e}"),
        })?;
        let mut out = BTreeMap::new();
        for (ns, groups) in map {
            let text = serde_yaml_ng::to_string(&serde_json::json!({ "groups": groups })).unwrap_or_default();
            let parsed = rules::parse_rule_file_as(&ns, &text, self.dialect).map_err(|e| ProviderError::Api {
                request: request.clone(),
                status: Some(answer.status.as_u16()),
                message: format!("namespace {ns}: {e}"),
            })?;
            out.insert(ns, parsed);
        }
        Ok(out)
    }

    pub async fn set_group(&self, namespace: &str, group: &Group) -> Result<(), ProviderError> {
        let url = self.url(&[namespace])?;
        let body = rules::group_yaml(group)?;
        self.client
            .send(Method::POST, &url, Some(("application/yaml", body)), &[])
            .await
            .map(|_| ())
    }

    pub async fn delete_group(&self, namespace: &str, group: &str) -> Result<(), ProviderError> {
        let url = self.url(&[namespace, group])?;
        self.client.send(Method::DELETE, &url, None, &[]).await.map(|_| ())
    }

    /// Rule health from `<prefix>/api/v1/rules`; `None` where the ruler does
    /// not serve it (an older Cortex answers 404).
    pub async fn health(&self) -> Result<Option<RulesData>, ProviderError> {
        let url = self.state_url.clone();
        let answer = self.client.send(Method::GET, &url, None, &[404]).await?;
        if answer.status.as_u16() == 404 {
            return Ok(None);
        }
        decode(&format!("GET {url}"), &answer.body).map(Some)
    }
}
