//! The images of container replicas: checked on this machine and pulled when missing, once per
//! image however many replicas wait for it, as the pod's `imagePullPolicy` says. The pull's
//! progress and its failure are what a deployment's status shows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::engine::{self, Engine, ImageConfig};

/// A failed pull is tried again by the next replica that needs the image after this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullPolicy {
    /// Pull when the image is not on this machine (the default for tagged images).
    IfNotPresent,
    /// Pull once per run of the platform, whether or not it is here.
    Always,
    /// Never pull: the image must be here.
    Never,
}

impl PullPolicy {
    /// The policy a pod gets: its own, else Kubernetes' default for the image reference.
    pub fn of(policy: Option<&str>, image: &str) -> PullPolicy {
        match policy {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some(_) => PullPolicy::IfNotPresent,
            None => {
                let last = image.rsplit('/').next().unwrap_or(image);
                let tagged = last.contains(':') || image.contains('@');
                if !tagged || image.ends_with(":latest") {
                    PullPolicy::Always
                } else {
                    PullPolicy::IfNotPresent
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImageState {
    /// Being checked or pulled; the engine's last line.
    Pulling(String),
    Ready(ImageConfig),
    /// Why it cannot be used, and since when.
    Failed(String, Instant),
}

/// The images of this backend's container replicas.
#[derive(Default)]
pub(crate) struct Images {
    states: Mutex<HashMap<String, ImageState>>,
    changed: watch::Sender<u64>,
}

impl Images {
    fn set(&self, image: &str, state: ImageState) {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).insert(image.to_string(), state);
        self.changed.send_modify(|v| *v += 1);
    }

    fn get(&self, image: &str) -> Option<ImageState> {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).get(image).cloned()
    }

    /// Waits until `image` can be run; `waiting` gets the pull's progress as it goes.
    pub async fn ready(
        self: &Arc<Self>,
        engine: &Engine,
        image: &str,
        policy: PullPolicy,
        waiting: impl Fn(&str),
    ) -> Result<ImageConfig, String> {
        let mut changes = self.changed.subscribe();
        self.start(engine, image, policy);
        loop {
            match self.get(image) {
                Some(ImageState::Ready(config)) => return Ok(config),
                Some(ImageState::Failed(why, _)) => return Err(why),
                Some(ImageState::Pulling(line)) => waiting(&line),
                None => {}
            }
            if changes.changed().await.is_err() {
                return Err("the backend is shutting down".into());
            }
        }
    }

    /// Starts checking (and pulling) `image` unless that is under way, done, or failed lately.
    fn start(self: &Arc<Self>, engine: &Engine, image: &str, policy: PullPolicy) {
        {
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            match states.get(image) {
                Some(ImageState::Pulling(_)) | Some(ImageState::Ready(_)) => return,
                Some(ImageState::Failed(_, at)) if at.elapsed() < RETRY_AFTER => return,
                _ => {}
            }
            states.insert(image.to_string(), ImageState::Pulling(format!("checking image `{image}`")));
        }
        let (images, engine, image) = (self.clone(), engine.clone(), image.to_string());
        tokio::spawn(async move {
            let state = match fetch(&images, &engine, &image, policy).await {
                Ok(config) => ImageState::Ready(config),
                Err(why) => ImageState::Failed(why, Instant::now()),
            };
            images.set(&image, state);
        });
    }
}

async fn fetch(
    images: &Images,
    engine: &Engine,
    image: &str,
    policy: PullPolicy,
) -> Result<ImageConfig, String> {
    if policy != PullPolicy::Always
        && let Some(config) = engine::inspect_image(engine, image).await?
    {
        return Ok(config);
    }
    if policy == PullPolicy::Never {
        return Err(format!(
            "image `{image}` is not on this machine and its imagePullPolicy is Never; build or load it \
             (`{} build -t {image} .`, `{} load`)",
            engine.name(),
            engine.name()
        ));
    }
    images.set(image, ImageState::Pulling(format!("pulling image `{image}`")));
    engine::pull(engine, image, |line| {
        images.set(image, ImageState::Pulling(format!("pulling image `{image}`: {line}")))
    })
    .await?;
    engine::inspect_image(engine, image)
        .await?
        .ok_or_else(|| format!("image `{image}` was pulled but the engine does not find it"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_follow_kubernetes_defaults() {
        assert_eq!(PullPolicy::of(Some("Never"), "srv:1"), PullPolicy::Never);
        assert_eq!(PullPolicy::of(Some("IfNotPresent"), "srv:latest"), PullPolicy::IfNotPresent);
        assert_eq!(PullPolicy::of(None, "srv:1"), PullPolicy::IfNotPresent);
        assert_eq!(PullPolicy::of(None, "srv:latest"), PullPolicy::Always);
        assert_eq!(PullPolicy::of(None, "registry.example/srv"), PullPolicy::Always);
        assert_eq!(PullPolicy::of(None, "localhost:5000/srv"), PullPolicy::Always);
        assert_eq!(PullPolicy::of(None, "localhost:5000/srv:2"), PullPolicy::IfNotPresent);
    }
}
