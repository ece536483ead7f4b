//! OCI registries: resolving and pulling artifacts (work in progress).
