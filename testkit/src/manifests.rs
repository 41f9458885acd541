//! Kubernetes objects the agent tests feed xlb through `--manifests`.

/// Node `node-a` (InternalIP 198.18.0.2, podCIDR 10.244.1.0/24) and the
/// Service `default/web` (ClusterIP 10.96.0.10, port 80 to 8080), no endpoints.
pub const NODE_A_AND_WEB: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDR: 10.244.1.0/24}
status:
  addresses: [{type: InternalIP, address: 198.18.0.2}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 80, targetPort: 8080}]
"#;

/// [`NODE_A_AND_WEB`] with one endpoint of `web`: 10.244.1.5:8080 on node-a.
pub fn node_a_and_web_with_endpoint() -> String {
    format!(
        r#"{NODE_A_AND_WEB}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{port: 8080, protocol: TCP}}]
endpoints:
- addresses: ["10.244.1.5"]
  nodeName: node-a
"#
    )
}
