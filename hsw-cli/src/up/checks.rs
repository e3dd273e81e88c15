//! Step 1 of `up`: the host checks (`hsw-cli check`'s report), the config's warnings, whether the cloud
//! cluster's Kubernetes can come up without the internet (when `up` configures it offline), and the GPU plan.

use std::io::Write;

use super::{say, step_header, Up, UP_STEPS};
use crate::error::Error;
use crate::{host_cmds, Format};

/// Step 1: the host checks, the config's warnings and its GPU plan.
pub fn checks(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    let session = up.session;
    step_header(out, n, UP_STEPS, "host checks, validation, GPU plan");
    if up.args.skip_check {
        say(out, "host checks skipped (--skip-check)");
    } else {
        let report = host_cmds::check(session, up.host_root.as_deref(), Format::Text, out)?;
        let _ = out.flush();
        if report.failed() {
            return Err(Error::invalid(
                "the host checks above failed (`fail` lines); make the fixes they name (`sudo hsw-cli \
                 prepare --apply` makes most of them) and run `hsw-cli up` again, or pass --skip-check",
            ));
        }
    }
    session.print_warnings();
    say(
        out,
        format!(
            "{} is valid ({})",
            session.name, session.config.metadata.name
        ),
    );
    if !up.args.online && !up.args.hpc_only {
        if let Some(why) = session.config.kubernetes_needs_internet() {
            return Err(Error::invalid(format!(
                "{why}, and `up` configures the clusters offline: set `source: bundle` and `cni: bridge` under \
                 clusters.cloud.kubernetes_config and leave clusters.cloud.mlflow.runtime at `service` in {}, run \
                 `hsw-cli up --online` on a host with the internet, or `hsw-cli up --hpc-only`",
                session.name
            )));
        }
    }
    let plan = session.plan()?;
    for i in &plan.instances {
        say(
            out,
            format!(
                "GPU plan: {} gets MIG {} on {} (slices {}..{})",
                i.cluster,
                i.profile,
                i.device,
                i.placement_start,
                i.placement_start + i.placement_size
            ),
        );
    }
    for w in &plan.whole_gpus {
        say(
            out,
            format!("GPU plan: {} gets the whole GPU {}", w.cluster, w.device),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;
    use crate::runner::fake::FakeRunner;
    use crate::session::Session;
    use crate::up::testing::{fixture, text, Fixture};

    #[test]
    fn the_checks_step_prints_the_plan_or_stops_on_a_failed_host_check() {
        let runner = FakeRunner::new();
        let f = Fixture::new(Some("sb"));
        let (r, t) = f.run_step(&runner, checks, 1, |_| {});
        r.unwrap();
        assert!(
            t.contains("==> [1/13] host checks, validation, GPU plan"),
            "{t}"
        );
        assert!(t.contains("hsw: host checks skipped (--skip-check)"), "{t}");
        assert!(
            t.contains(&format!(
                "hsw: {} is valid (hsw-dev)",
                hsw_core::config::DEFAULT_CONFIG_NAME
            )),
            "{t}"
        );
        let plan = fixture::session();
        let plan = plan.plan().unwrap();
        let mig = plan.instances.first().unwrap();
        assert!(
            t.contains(&format!(
                "hsw: GPU plan: {} gets MIG {} on {}",
                mig.cluster, mig.profile, mig.device
            )),
            "{t}"
        );
        // A host that cannot run VMs (no vmx/svm, no /dev/kvm; its config demands KVM): its check report is
        // printed, and up stops.
        let hosts = Fixture::repo().join("tests/fixtures/hosts");
        let root = hosts.join("no-virtualization");
        let session = Session::load(Some(&hosts.join("gpu-host.yaml"))).unwrap();
        let ctx = f.ctx(&runner);
        let mut args = f.args();
        args.skip_check = false;
        let mut up = Up::new(&ctx, &session, &args);
        up.host_root = Some(root.clone());
        let mut out = Vec::new();
        let r = checks(&mut up, 1, &mut out);
        let t = text(&out);
        let e = r.unwrap_err();
        assert_eq!(e.code(), exit::INVALID);
        assert!(
            e.to_string()
                .starts_with("the host checks above failed (`fail` lines)"),
            "{e}"
        );
        assert!(
            t.contains(&format!("hsw-cli check: host {}", root.display())),
            "{t}"
        );
        assert!(!t.contains("GPU plan:"), "{t}");
        assert!(runner.calls().is_empty(), "the checks step runs no process");
    }

    #[test]
    fn kubernetes_that_needs_the_internet_stops_an_offline_up() {
        let runner = FakeRunner::new();
        let f = Fixture::new(Some("sb"));
        let file = f.dir.path().join("calico.yaml");
        std::fs::write(
            &file,
            hsw_core::config::DEFAULT_CONFIG.replace("cni: bridge", "cni: calico"),
        )
        .unwrap();
        let session = Session::load(Some(&file)).unwrap();
        let ctx = f.ctx(&runner);
        let run = |edit: &dyn Fn(&mut crate::up::UpArgs)| {
            let mut args = f.args();
            edit(&mut args);
            let mut up = Up::new(&ctx, &session, &args);
            checks(&mut up, 1, &mut Vec::new())
        };
        let e = run(&|_| {}).unwrap_err();
        assert_eq!(e.code(), exit::INVALID);
        assert!(
            e.to_string().starts_with(
                "clusters.cloud.kubernetes_config.cni is calico (its images come from the internet), and `up` \
                 configures the clusters offline: set `source: bundle` and `cni: bridge`"
            ),
            "{e}"
        );
        run(&|a| a.online = true).unwrap();
        run(&|a| a.hpc_only = true).unwrap();
    }

    #[test]
    fn mlflow_on_kubernetes_stops_an_offline_up_and_the_service_does_not() {
        let runner = FakeRunner::new();
        let f = Fixture::new(Some("sb"));
        let ctx = f.ctx(&runner);
        for (runtime, refused) in [("kubernetes", true), ("service", false), ("none", false)] {
            let file = f.dir.path().join(format!("mlflow-{runtime}.yaml"));
            std::fs::write(
                &file,
                hsw_core::config::DEFAULT_CONFIG.replace(
                    "    kubernetes_config:\n",
                    &format!("    mlflow:\n      runtime: {runtime}\n    kubernetes_config:\n"),
                ),
            )
            .unwrap();
            let session = Session::load(Some(&file)).unwrap();
            let args = f.args();
            let mut up = Up::new(&ctx, &session, &args);
            match checks(&mut up, 1, &mut Vec::new()) {
                Err(e) if refused => assert!(
                    e.to_string().starts_with(
                        "clusters.cloud.mlflow.runtime is kubernetes (MinIO's and MLflow's images come from the \
                         internet), and `up` configures the clusters offline:"
                    ),
                    "{e}"
                ),
                Ok(()) if !refused => {}
                r => panic!("{runtime}: {r:?}"),
            }
        }
    }
}
