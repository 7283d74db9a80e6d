"""HTTP clients of the services nb2kfp talks to: KFP API, OCI registries, GitLab REST API."""
