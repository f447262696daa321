//! What the GPU was doing while a candidate ran: SM and memory clocks, board power and
//! temperature from NVML, and the NVIDIA driver's version.
//!
//! NVML is the driver's own library (libnvidia-ml), loaded at run time: where it is missing
//! (a machine without the driver, a container without it mounted) the probe is simply
//! absent and rows keep empty cells, never an error.

use super::device::Gpu;
use cudarc::driver::sys::CUdevice_attribute as A;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};

/// One reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub sm_mhz: Option<u32>,
    pub mem_mhz: Option<u32>,
    pub power_w: Option<f64>,
    pub temp_c: Option<u32>,
}

/// NVML opened on the device a [`Gpu`] runs on.
pub struct Probe {
    nvml: Nvml,
    /// The device's PCI bus id: NVML's index can differ from CUDA's ordinal (for one,
    /// under CUDA_VISIBLE_DEVICES), the bus id cannot.
    bus_id: String,
    pub driver: String,
}

impl Probe {
    /// `None` where NVML cannot be loaded or does not know the device.
    pub fn open(gpu: &Gpu) -> Option<Probe> {
        let nvml = Nvml::init().ok()?;
        let attr = |a| gpu.ctx.attribute(a).ok();
        let bus_id = format!(
            "{:08x}:{:02x}:{:02x}.0",
            attr(A::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
            attr(A::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
            attr(A::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?
        );
        nvml.device_by_pci_bus_id(bus_id.as_str()).ok()?;
        let driver = nvml.sys_driver_version().unwrap_or_default();
        Some(Probe { nvml, bus_id, driver })
    }

    /// Reads the device now; a value NVML does not report stays `None`.
    pub fn read(&self) -> Reading {
        let Ok(d) = self.nvml.device_by_pci_bus_id(self.bus_id.as_str()) else { return Reading::default() };
        Reading {
            sm_mhz: d.clock_info(Clock::SM).ok(),
            mem_mhz: d.clock_info(Clock::Memory).ok(),
            power_w: d.power_usage().ok().map(|mw| mw as f64 / 1000.0),
            temp_c: d.temperature(TemperatureSensor::Gpu).ok(),
        }
    }
}
