//! The real backend (GPIO character device through gpiocdev) against the
//! kernel's `gpio-sim` chip, set up through configfs with the label of a
//! Pi 4's chip so the label search finds it. The kernel's side of each
//! line is driven and read through gpio-sim's sysfs attributes. Kernels
//! without gpio-sim (or runs without root) print `SKIP:` and return.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use evergreen_connector_raspberry_pi_gpio::cdev::{find_pi_chip, CdevChip};

const CONFIGFS: &str = "/sys/kernel/config/gpio-sim";

/// A live gpio-sim chip, removed on drop.
struct SimDevice {
    dir: PathBuf,
    dev: PathBuf,
    sysfs: PathBuf,
}

impl SimDevice {
    fn create(label: &str, lines: u32) -> Result<SimDevice, String> {
        let root = Path::new(CONFIGFS);
        if !root.is_dir() {
            // The module may just not be loaded.
            let _ = std::process::Command::new("modprobe")
                .arg("gpio-sim")
                .status();
        }
        if !root.is_dir() {
            return Err(format!(
                "{CONFIGFS} is missing: this kernel has no gpio-sim (CONFIG_GPIO_SIM) or configfs is not mounted"
            ));
        }
        let dir = root.join(format!("evergreen-test-{}", std::process::id()));
        let step =
            |what: &str, r: std::io::Result<()>| r.map_err(|e| format!("gpio-sim {what}: {e}"));
        step("mkdir", std::fs::create_dir(&dir))?;
        let mut device = SimDevice {
            dir: dir.clone(),
            dev: PathBuf::new(),
            sysfs: PathBuf::new(),
        };
        step("bank", std::fs::create_dir(dir.join("bank0")))?;
        step(
            "num_lines",
            std::fs::write(dir.join("bank0/num_lines"), lines.to_string()),
        )?;
        step("label", std::fs::write(dir.join("bank0/label"), label))?;
        step("live", std::fs::write(dir.join("live"), "1"))?;
        let read = |p: &str| {
            std::fs::read_to_string(dir.join(p))
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("gpio-sim {p}: {e}"))
        };
        let chip = read("bank0/chip_name")?;
        let dev_name = read("dev_name")?;
        device.dev = Path::new("/dev").join(&chip);
        device.sysfs = Path::new("/sys/devices/platform")
            .join(dev_name)
            .join(&chip);
        Ok(device)
    }

    fn pull(&self, line: u32, up: bool) {
        std::fs::write(
            self.sysfs.join(format!("sim_gpio{line}/pull")),
            if up { "pull-up" } else { "pull-down" },
        )
        .expect("gpio-sim pull");
    }

    fn value(&self, line: u32) -> String {
        std::fs::read_to_string(self.sysfs.join(format!("sim_gpio{line}/value")))
            .expect("gpio-sim value")
            .trim()
            .to_string()
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("live"), "0");
        let _ = std::fs::remove_dir(self.dir.join("bank0"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Waits up to 2 s for the kernel side of `line` to read `want`.
fn wait_value(sim: &SimDevice, line: u32, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while sim.value(line) != want {
        assert!(Instant::now() < deadline, "line {line} never read {want}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn real_backend_on_gpio_sim() {
    let sim = match SimDevice::create("pinctrl-bcm2711", 28) {
        Ok(s) => s,
        Err(reason) => {
            eprintln!("SKIP: real GPIO backend not tested: {reason}; needs root and a kernel with gpio-sim");
            return;
        }
    };
    // The label search finds the simulated "Pi 4" chip when granted, and
    // from a grant still naming V1's /dev/gpiomem.
    let (path, label) = find_pi_chip(Path::new("/dev"), Some(&sim.dev)).expect("chip by label");
    assert_eq!(
        (path.as_path(), label.as_str()),
        (sim.dev.as_path(), "pinctrl-bcm2711")
    );
    let (_, label) =
        find_pi_chip(Path::new("/dev"), Some(Path::new("/dev/gpiomem"))).expect("chip by label");
    assert_eq!(label, "pinctrl-bcm2711");
    let chip = CdevChip::open(&sim.dev).expect("open gpio-sim chip");
    let mut run = start(
        Box::new(chip),
        settings(&[
            ("InputGpios", "5,6U,7D"),
            ("OutputGpios", "8H,9"),
            ("InputPollPeriod", "10"),
        ]),
    );
    // The requested bias and initial levels reach the kernel.
    wait_value(&sim, 6, "1");
    wait_value(&sim, 7, "0");
    wait_value(&sim, 8, "1");
    wait_value(&sim, 9, "0");
    run.send(&format!("gpio/{CORE}/6/read"), b"");
    assert_eq!(run.expect(), (state(6), "1".into()));
    run.send(&format!("gpio/{CORE}/9/write"), b"1");
    assert_eq!(run.expect(), (state(9), "1".into()));
    wait_value(&sim, 9, "1");
    // An input change from outside: an edge event (or a poll) publishes it.
    sim.pull(5, true);
    assert_eq!(run.expect(), (state(5), "1".into()));
    sim.pull(5, false);
    assert_eq!(run.expect(), (state(5), "0".into()));
    let logs = run.stop();
    eprintln!("gpio-sim run logs: {logs:?}");
}

#[test]
fn no_pi_chip_is_an_error_that_names_the_fix() {
    let dir = std::env::temp_dir().join(format!("eg-gpio-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    // Not a character device: its label cannot be read.
    std::fs::write(dir.join("gpiochip0"), "").expect("write");
    std::fs::write(dir.join("gpiomem"), "").expect("write");
    let e = find_pi_chip(&dir, Some(&dir.join("gpiomem"))).expect_err("no chip");
    let text = e.to_string();
    assert!(
        text.contains("pinctrl-bcm2711 or pinctrl-bcm2835 or pinctrl-rp1"),
        "{text}"
    );
    assert!(text.contains("/dev/gpiochip0"), "{text}");
    assert!(CdevChip::open(&dir.join("gpiochip0")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
