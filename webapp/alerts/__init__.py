"""Alert webhooks: Prometheus Alertmanager and Grafana notifications sent as WeChat messages."""
