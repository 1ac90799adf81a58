//! The HTTP connection manager of every listener, as istiod's buildHTTPConnectionManager
//! sets it up for the fields that change a drill's result.

use serde_json::{Value, json};

use super::{FAULT_FILTER, FAULT_TYPE, Layout};

pub(super) fn listener(name: &str, port: u16, route_config: &str, layout: &Layout) -> Value {
    let rds_file = layout.rds_file(route_config);
    json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                // As istiod's buildHTTPConnectionManager with the default mesh config
                // (pathNormalization DEFAULT = BASE).
                "normalize_path": true,
                // As istiod: no stream idle timeout (Envoy's default of 5 min would
                // cut a fixed delay of 5 min or more).
                "stream_idle_timeout": "0s",
                "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                "rds": {
                    "route_config_name": route_config,
                    "config_source": {
                        "path_config_source": {
                            "path": rds_file.display().to_string(),
                            "watched_directory": {"path": layout.rds_dir.display().to_string()}
                        },
                        "resource_api_version": "V3"
                    }
                },
                // As istiod: an empty fault filter before the router on every HTTP
                // listener, so per-route fault configuration takes effect.
                "http_filters": [
                    {"name": FAULT_FILTER, "typed_config": {"@type": FAULT_TYPE}},
                    {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                ],
                "access_log": [{
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": layout.access_log.display().to_string(),
                        "log_format": {"json_format": {
                            "hop": name,
                            "status": "%RESPONSE_CODE%",
                            "flags": "%RESPONSE_FLAGS%",
                            "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
                            "duration_ms": "%DURATION%",
                            "cluster": "%UPSTREAM_CLUSTER%",
                            "authority": "%REQ(:AUTHORITY)%",
                            "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
                        }}
                    }
                }]
            }
        }]}]
    })
}
