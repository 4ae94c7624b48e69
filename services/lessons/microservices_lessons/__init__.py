"""Two small commands the lessons run from any image, built on the services' shared helpers
(microservices_common) but not part of any service: proxy, the ambassador of
k8s/16-ambassador (`microservices-proxy`), and redis_metrics, the adapter of k8s/17-adapter
(`microservices-redis-metrics`).
"""
