//! The chaos soak's model of what Git holds: 50 Applications of five shapes (plain manifests,
//! Kustomize, a Helm chart, a canary and a blue-green Deployment, PostSync hooks), each one's
//! state (a revision counter, an image tag, a set of extra ConfigMaps), the files that state
//! renders to, the objects Git says must exist, and the log of every commit pushed, in order.
//!
//! The soak's invariant checker reads the log to tell a prune Git asked for from a deletion it
//! did not; the final check compares the cluster with the newest commit's objects.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use super::{configmap, deployment};

/// How an Application's directory is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Plain,
    Kustomize,
    Helm,
    /// Plain manifests with a Deployment rolled out by a canary strategy.
    Canary,
    /// Plain manifests with a Deployment rolled out blue-green (auto-promoted).
    BlueGreen,
    /// Plain manifests with a PostSync hook Job.
    Hooks,
}

impl Shape {
    /// The shape of Application number `i`: of ten, three plain, two Kustomize, two Helm, one
    /// of each other.
    pub fn of(i: usize) -> Shape {
        match i % 10 {
            0..=2 => Shape::Plain,
            3 | 4 => Shape::Kustomize,
            5 | 6 => Shape::Helm,
            7 => Shape::Canary,
            8 => Shape::BlueGreen,
            _ => Shape::Hooks,
        }
    }

    /// Whether it has a Deployment (whose image the commit stream changes).
    pub fn has_workload(self) -> bool {
        matches!(self, Shape::Canary | Shape::BlueGreen)
    }
}

/// What one Application's files say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppState {
    pub shape: Shape,
    /// `data.rev` of its `-config` ConfigMap.
    pub rev: u32,
    /// Image tag `1.<tag>` of its Deployment, when it has one.
    pub tag: u32,
    /// Its `-extra-<k>` ConfigMaps; removing one from Git is a legitimate prune.
    pub extras: BTreeSet<u32>,
}

/// `s07`: Application number 7's name, also the prefix of every object it owns.
pub fn app_name(i: usize) -> String {
    format!("s{i:02}")
}

/// The Application a soak object belongs to, by its name's prefix (`s07-config` -> `s07`).
pub fn owner_of(object_name: &str) -> Option<&str> {
    let prefix = object_name.get(..3)?;
    let ok = prefix.starts_with('s') && prefix[1..].bytes().all(|b| b.is_ascii_digit());
    (ok && object_name.as_bytes().get(3) == Some(&b'-')).then_some(prefix)
}

/// `Kind/name` of an object in the soak namespace.
pub fn key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

impl AppState {
    pub fn new(shape: Shape) -> AppState {
        AppState { shape, rev: 1, tag: 1, extras: [1, 2].into_iter().collect() }
    }

    /// The objects Git says app `name` must have (hooks and rollout-derived objects aside).
    pub fn objects(&self, name: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = [key("ConfigMap", &format!("{name}-config"))].into();
        out.extend(self.extras.iter().map(|k| key("ConfigMap", &format!("{name}-extra-{k}"))));
        if self.shape.has_workload() {
            out.insert(key("Deployment", &format!("{name}-web")));
            out.insert(key("Service", &format!("{name}-web")));
        }
        if self.shape == Shape::BlueGreen {
            out.insert(key("Service", &format!("{name}-web-preview")));
        }
        out
    }

    /// The `data` each ConfigMap of the app must hold, by name.
    pub fn config_data(&self, name: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        out.insert(format!("{name}-config"), [("rev".to_string(), self.rev.to_string())].into());
        for k in &self.extras {
            out.insert(format!("{name}-extra-{k}"), [("k".to_string(), k.to_string())].into());
        }
        out
    }

    /// The image its Deployment must run.
    pub fn image(&self, name: &str) -> String {
        format!("registry.example/{name}:1.{}", self.tag)
    }

    /// Its files, relative to the repository root (under `apps/<name>/`).
    pub fn files(&self, name: &str) -> Vec<(String, String)> {
        let dir = format!("apps/{name}");
        let mut files: Vec<(String, String)> = match self.shape {
            Shape::Helm => return self.chart_files(name, &dir),
            _ => self.manifest_files(name),
        };
        if self.shape == Shape::Kustomize {
            let resources: Vec<String> = files.iter().map(|(f, _)| format!("- {f}\n")).collect();
            let kustomization = format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nlabels:\n- pairs: {{tier: soak}}\nresources:\n{}",
                resources.concat()
            );
            files.push(("kustomization.yaml".into(), kustomization));
        }
        files.into_iter().map(|(f, text)| (format!("{dir}/{f}"), text)).collect()
    }

    fn manifest_files(&self, name: &str) -> Vec<(String, String)> {
        let rev = self.rev.to_string();
        let mut files =
            vec![("config.yaml".to_string(), configmap(&format!("{name}-config"), None, &[("rev", &rev)]))];
        for k in &self.extras {
            let text = configmap(&format!("{name}-extra-{k}"), None, &[("k", &k.to_string())]);
            files.push((format!("extra-{k}.yaml"), text));
        }
        let web = format!("{name}-web");
        if self.shape.has_workload() {
            files.push(("deployment.yaml".into(), deployment(&web, None, &self.image(name), 2)));
            files.push(("service.yaml".into(), service(&web, &web)));
        }
        if self.shape == Shape::BlueGreen {
            files.push(("preview.yaml".into(), service(&format!("{web}-preview"), &web)));
        }
        if self.shape == Shape::Hooks {
            files.push(("post.yaml".into(), post_sync_job(name)));
        }
        files
    }

    fn chart_files(&self, name: &str, dir: &str) -> Vec<(String, String)> {
        let extras: Vec<String> = self.extras.iter().map(|k| format!("\"{k}\"")).collect();
        let template = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  rev: {{ .Values.rev | quote }}
{{- range .Values.extras }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $.Release.Name }}-extra-{{ . }}
data:
  k: {{ . | quote }}
{{- end }}
"#;
        vec![
            (format!("{dir}/Chart.yaml"), format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\n")),
            (
                format!("{dir}/values.yaml"),
                format!("rev: \"{}\"\nextras: [{}]\n", self.rev, extras.join(", ")),
            ),
            (format!("{dir}/templates/config.yaml"), template.to_string()),
        ]
    }
}

/// A Service named `name` selecting the pods of Deployment `workload`.
fn service(name: &str, workload: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {workload}}}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n"
    )
}

/// A PostSync hook Job (a new one per revision, deleted once it succeeded); kwok completes it.
fn post_sync_job(name: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: {name}-post-\n  annotations:\n    argocd.argoproj.io/hook: PostSync\n    argocd.argoproj.io/hook-delete-policy: HookSucceeded\nspec:\n  backoffLimit: 0\n  activeDeadlineSeconds: 600\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: check\n        image: registry.example/check:1\n"
    )
}

/// Every Application's state: what the next commit writes.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub apps: Vec<AppState>,
}

impl Fleet {
    pub fn new(count: usize) -> Fleet {
        Fleet { apps: (0..count).map(|i| AppState::new(Shape::of(i))).collect() }
    }

    /// The whole repository tree.
    pub fn files(&self) -> Vec<(String, String)> {
        self.apps.iter().enumerate().flat_map(|(i, a)| a.files(&app_name(i))).collect()
    }

    /// Objects by app name.
    pub fn objects(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.apps.iter().enumerate().map(|(i, a)| (app_name(i), a.objects(&app_name(i)))).collect()
    }

    /// One random change, as a commit stream makes them: a ConfigMap's data (most often), an
    /// image (a rollout), or an extra ConfigMap added or removed from Git (a prune). Returns
    /// the commit message.
    pub fn mutate(&mut self, rng: &mut Rng) -> String {
        let i = rng.below(self.apps.len() as u64) as usize;
        let app = &mut self.apps[i];
        let name = app_name(i);
        let roll = rng.below(100);
        if app.shape.has_workload() && roll < 40 {
            app.tag += 1;
            return format!("{name}: image 1.{}", app.tag);
        }
        if roll >= 80 {
            let k = 1 + rng.below(3) as u32;
            return if app.extras.remove(&k) {
                format!("{name}: remove extra-{k}")
            } else {
                app.extras.insert(k);
                format!("{name}: add extra-{k}")
            };
        }
        app.rev += 1;
        format!("{name}: rev {}", app.rev)
    }
}

/// One commit pushed to the branch, in the order pushed.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub sha: String,
    /// Position in the stream (0 for the first commit).
    pub seq: usize,
    /// When the push returned.
    pub at: Instant,
    /// Each Application's objects at this commit.
    pub objects: BTreeMap<String, BTreeSet<String>>,
}

/// Every commit pushed, in order.
#[derive(Clone, Debug, Default)]
pub struct CommitLog {
    pub commits: Vec<Pushed>,
}

impl CommitLog {
    /// Records a commit pushed just now.
    pub fn push(&mut self, sha: &str, objects: BTreeMap<String, BTreeSet<String>>, at: Instant) {
        let seq = self.commits.len();
        self.commits.push(Pushed { sha: sha.to_string(), seq, at, objects });
    }

    /// The position of `sha` in the stream.
    pub fn seq_of(&self, sha: &str) -> Option<usize> {
        self.commits.iter().rev().find(|c| c.sha == sha).map(|c| c.seq)
    }

    pub fn newest(&self) -> Option<&Pushed> {
        self.commits.last()
    }
}

/// The commit a revision string names (`main@sha1:<sha>`).
pub fn revision_sha(revision: &str) -> Option<&str> {
    revision.rsplit_once("sha1:").map(|(_, sha)| sha).filter(|s| s.len() == 40)
}

/// A small seeded generator (SplitMix64): the soak's choices are reproducible from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi` seconds, as a Duration.
    pub fn secs(&mut self, lo: u64, hi: u64) -> std::time::Duration {
        std::time::Duration::from_secs(lo + self.below(hi.saturating_sub(lo) + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_name_prefixes() {
        assert_eq!(owner_of("s07-config"), Some("s07"));
        assert_eq!(owner_of("s07-web-canary"), Some("s07"));
        assert_eq!(owner_of("kube-root-ca.crt"), None);
        assert_eq!(owner_of("s7"), None);
    }

    #[test]
    fn removing_an_extra_removes_its_file_and_object() {
        let mut app = AppState::new(Shape::Kustomize);
        assert!(app.objects("s03").contains("ConfigMap/s03-extra-2"));
        app.extras.remove(&2);
        let files = app.files("s03");
        assert!(!files.iter().any(|(f, _)| f.ends_with("extra-2.yaml")));
        let kustomization = &files.iter().find(|(f, _)| f.ends_with("kustomization.yaml")).unwrap().1;
        assert!(kustomization.contains("- extra-1.yaml") && !kustomization.contains("extra-2"));
        assert!(!app.objects("s03").contains("ConfigMap/s03-extra-2"));
    }

    #[test]
    fn the_generator_is_reproducible() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<u64> = (0..5).map(|_| a.below(100)).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.below(100)).collect();
        assert_eq!(xs, ys);
        assert_eq!(revision_sha(&format!("main@sha1:{}", "a".repeat(40))), Some("a".repeat(40).as_str()));
    }
}
