//! Facts about the host the GPUs sit in, through sysinfo (and `/etc/machine-id`).

use serde::Serialize;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Where a stable machine identity is kept on systemd and most other Linux systems.
const MACHINE_ID_PATHS: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// The host's identity and size. A fact the OS does not give is `None`.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Host name.
    pub hostname: Option<String>,
    /// The systemd machine id (32 hex digits), when the OS keeps one.
    pub machine_id: Option<String>,
    /// Operating system name and version, e.g. "Debian GNU/Linux 12 (bookworm)".
    pub os: Option<String>,
    /// Kernel version.
    pub kernel: Option<String>,
    /// CPU architecture, e.g. "x86_64".
    pub cpu_arch: String,
    /// CPU model name of the first logical CPU.
    pub cpu_model: Option<String>,
    /// Logical CPUs.
    pub cpu_count: usize,
    /// Physical cores, when known.
    pub physical_cores: Option<usize>,
    /// Installed memory, bytes.
    pub memory_bytes: u64,
}

impl Host {
    /// Reads the host's facts.
    pub fn read() -> Self {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_owned())
            .filter(|b| !b.is_empty());
        Self {
            hostname: System::host_name(),
            machine_id: machine_id(),
            os: System::long_os_version(),
            kernel: System::kernel_version(),
            cpu_arch: System::cpu_arch(),
            cpu_model,
            cpu_count: sys.cpus().len(),
            physical_cores: System::physical_core_count(),
            memory_bytes: sys.total_memory(),
        }
    }
}

fn machine_id() -> Option<String> {
    MACHINE_ID_PATHS.iter().find_map(|p| {
        let id = std::fs::read_to_string(p).ok()?;
        let id = id.trim();
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}
