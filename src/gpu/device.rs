//! The GPU: context, stream, properties, raw device buffers and kernel launches.
//!
//! Kernels take raw pointers and ints, so kernlab keeps its own thin `DevBuf` (a device
//! allocation freed on drop) and launches through the driver API with an explicit argument
//! list. cudarc's per-buffer event tracking is switched off: everything runs on one stream,
//! and tracking would add host work between timed launches.

use super::error::GpuError;
use super::libs;
use anyhow::{bail, Context, Result};
use cudarc::driver::{result as cu, sys, CudaContext, CudaStream};
use serde::{Deserialize, Serialize};
use std::ffi::c_void;
use std::sync::Arc;

/// What `kernlab devices` shows and what the tuned database keys on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceProps {
    pub name: String,
    pub cc_major: i32,
    pub cc_minor: i32,
    pub sm_count: i32,
    pub total_mem_bytes: u64,
    pub l2_bytes: u64,
    pub max_smem_optin: i32,
    pub max_threads_per_block: i32,
    pub regs_per_block: i32,
    pub sm_clock_mhz: i32,
    pub mem_clock_mhz: i32,
    pub bus_width_bits: i32,
    pub driver_version: String,
}

impl DeviceProps {
    /// `sm_90a` on Hopper (wgmma needs the `a` target), `sm_86` on an A40, ...
    pub fn arch(&self) -> String {
        let base = format!("sm_{}{}", self.cc_major, self.cc_minor);
        if self.cc_major == 9 && self.cc_minor == 0 {
            format!("{base}a")
        } else {
            base
        }
    }
    pub fn cc(&self) -> String {
        format!("{}.{}", self.cc_major, self.cc_minor)
    }
    pub fn limits(&self) -> crate::core::DeviceLimits {
        crate::core::DeviceLimits {
            max_smem: self.max_smem_optin as i64,
            max_threads: self.max_threads_per_block as i64,
            sm_count: self.sm_count as i64,
            cc: (self.cc_major * 10 + self.cc_minor) as i64,
        }
    }
}

/// One GPU with one stream.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub props: DeviceProps,
    /// Launch the entry points marked `KL_PDL_AWARE` (kernels/common/pdl.cuh) with
    /// programmatic dependent launch, so each may start while the kernel before it drains.
    /// Off unless asked for: a sweep times one kernel at a time, and back-to-back launches of
    /// the same kernel overlapping would time something else.
    pdl: bool,
}

fn attr(ctx: &CudaContext, a: sys::CUdevice_attribute) -> i32 {
    ctx.attribute(a).unwrap_or(0)
}

impl Gpu {
    /// Opens device `ordinal`, or explains in one paragraph why there is none.
    pub fn open(ordinal: usize) -> Result<Gpu> {
        libs::driver()?;
        if let Err(e) = cu::init() {
            bail!(
                "the NVIDIA driver is installed but cuInit failed ({e:?}): no usable GPU is visible \
                 (check nvidia-smi, CUDA_VISIBLE_DEVICES and that the driver supports CUDA 13, R580 or newer). {}",
                libs::WITHOUT_GPU
            );
        }
        let count = CudaContext::device_count().unwrap_or(0);
        if count <= 0 {
            bail!(
                "the NVIDIA driver sees no GPU (device count 0); check nvidia-smi and CUDA_VISIBLE_DEVICES. {}",
                libs::WITHOUT_GPU
            );
        }
        if ordinal >= count as usize {
            bail!("GPU {ordinal} does not exist: this machine has {count} (ordinals 0..{})", count - 1);
        }
        let ctx = CudaContext::new(ordinal).with_context(|| format!("creating a CUDA context on GPU {ordinal}"))?;
        // SAFETY: called before any buffer or stream exists, as cudarc requires.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (cc_major, cc_minor) = ctx.compute_capability()?;
        let mut dv = 0i32;
        // SAFETY: out-pointer to a valid int.
        unsafe { sys::cuDriverGetVersion(&mut dv) };
        use sys::CUdevice_attribute as A;
        let props = DeviceProps {
            name: ctx.name()?,
            cc_major,
            cc_minor,
            sm_count: attr(&ctx, A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            total_mem_bytes: ctx.total_mem()? as u64,
            l2_bytes: attr(&ctx, A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE) as u64,
            max_smem_optin: attr(&ctx, A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
            max_threads_per_block: attr(&ctx, A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
            regs_per_block: attr(&ctx, A::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK),
            sm_clock_mhz: attr(&ctx, A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE) / 1000,
            mem_clock_mhz: attr(&ctx, A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE) / 1000,
            bus_width_bits: attr(&ctx, A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH),
            driver_version: format!("{}.{}", dv / 1000, (dv % 1000) / 10),
        };
        Ok(Gpu { ctx, stream, props, pdl: false })
    }

    pub fn alloc(&self, bytes: usize) -> Result<DevBuf> {
        DevBuf::new(&self.ctx, bytes)
    }

    /// The same device and context with launches on a new stream of their own: CUDA graphs
    /// are captured there (the legacy default stream `open` uses cannot be captured). Work on
    /// it does not wait for the default stream: callers synchronize it themselves.
    pub fn on_new_stream(&self) -> Result<Gpu> {
        let stream = self.ctx.new_stream().context("creating a CUDA stream")?;
        Ok(Gpu { ctx: self.ctx.clone(), stream, props: self.props.clone(), pdl: self.pdl })
    }

    /// This GPU's context and stream with programmatic dependent launch on or off (see the
    /// field). PDL needs sm_90; elsewhere it stays off whatever is asked.
    pub fn with_pdl(&self, on: bool) -> Gpu {
        let pdl = on && self.supports_pdl();
        Gpu { ctx: self.ctx.clone(), stream: self.stream.clone(), props: self.props.clone(), pdl }
    }

    /// Whether this GPU has programmatic dependent launch (sm_90 and later).
    pub fn supports_pdl(&self) -> bool {
        self.props.cc_major >= 9
    }

    /// Whether PDL-aware kernels are launched with programmatic dependent launch.
    pub fn pdl(&self) -> bool {
        self.pdl
    }

    pub fn synchronize(&self) -> Result<()> {
        Ok(self.stream.synchronize().map_err(GpuError::driver("synchronizing the stream"))?)
    }

    /// Loads a compiled cubin and finds its entry point.
    pub fn load(&self, cubin: &[u8], entry: &str) -> Result<Kernel> {
        self.ctx.bind_to_thread()?;
        // The image must be NUL-terminated only for PTX; a cubin is read by its ELF header.
        // SAFETY: `cubin` is a complete cubin produced by NVRTC for this device's arch.
        let module = unsafe { cu::module::load_data(cubin.as_ptr() as *const c_void) }
            .map_err(GpuError::driver("loading the compiled module"))?;
        let cname = std::ffi::CString::new(entry)?;
        // SAFETY: module was just loaded; the name is a valid C string.
        let func = unsafe { cu::module::get_function(module, cname) }.map_err(|e| {
            // SAFETY: the module is not used after this unload.
            unsafe { cu::module::unload(module).ok() };
            GpuError::driver(format!("finding entry point {entry:?} in the module"))(e)
        })?;
        // The template marks an entry point that waits for its predecessor before touching
        // its data (pdl.cuh) with a module global `kl_pdl_<entry>`; only those may be
        // launched early.
        let marker = std::ffi::CString::new(format!("kl_pdl_{entry}"))?;
        let (mut dptr, mut bytes) = (0 as sys::CUdeviceptr, 0usize);
        // SAFETY: module is loaded, the name is a valid C string, the out-pointers are valid.
        let pdl = unsafe { sys::cuModuleGetGlobal_v2(&mut dptr, &mut bytes, module, marker.as_ptr()) }
            == sys::CUresult::CUDA_SUCCESS;
        Ok(Kernel { module, func, name: entry.to_string(), pdl })
    }

    /// Launches `k` on the stream. Arguments are passed by value in order.
    ///
    /// # Safety
    /// The kernel reads and writes whatever the arguments point at, and nothing checks them:
    /// every `Arg::Ptr` must be a live device allocation (or null where the entry point
    /// accepts null) sized for what this grid touches, `args` must match the entry point's
    /// parameter list in number, order and type (documented in each template's header), and
    /// the buffers must stay alive until the stream has run the launch.
    pub unsafe fn launch(
        &self,
        k: &Kernel,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
        args: &[Arg],
    ) -> Result<()> {
        // SAFETY: the caller upholds this function's contract, which is the same.
        unsafe { self.launch_with_maps(k, grid, block, smem, &[], args) }
    }

    /// `launch` for the sm_90a entry points whose first parameters are TMA tensor maps
    /// (`const __grid_constant__ CUtensorMap`, 128 bytes by value), then `args`.
    ///
    /// # Safety
    /// As [`Gpu::launch`]; in addition each map must describe a live device tensor the
    /// kernel may read (or write) for this grid, and the entry point must take exactly
    /// `maps.len()` tensor maps first.
    pub unsafe fn launch_with_maps(
        &self,
        k: &Kernel,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
        maps: &[sys::CUtensorMap],
        args: &[Arg],
    ) -> Result<()> {
        if smem > 48 * 1024 {
            k.set_max_dynamic_smem(smem)?;
        }
        // Each map and argument lives in `map_storage` / `storage` for the duration of the
        // call; the driver copies the values at launch.
        let mut map_storage: Vec<sys::CUtensorMap> = maps.to_vec();
        let mut storage: Vec<[u8; 8]> = args.iter().map(|a| a.bytes()).collect();
        let mut params: Vec<*mut c_void> = map_storage
            .iter_mut()
            .map(|m| m as *mut sys::CUtensorMap as *mut c_void)
            .chain(storage.iter_mut().map(|s| s.as_mut_ptr() as *mut c_void))
            .collect();
        // SAFETY: `params` points at one value per kernel parameter, in order, with the
        // sizes the kernel expects (tensor maps as their 128 bytes, pointers and 64-bit values
        // as 8 bytes, ints and floats as 4 — the low bytes of each slot, on a little-endian
        // host); what the values point at is the caller's contract (see `# Safety`).
        let launched = if self.pdl && k.pdl {
            // SAFETY: as for cuLaunchKernel below; the config and its one attribute outlive
            // the call.
            unsafe { launch_programmatic(k.func, grid, block, smem, self.stream.cu_stream(), &mut params) }
        } else {
            // SAFETY: see above.
            unsafe { cu::launch_kernel(k.func, grid, block, smem, self.stream.cu_stream(), &mut params) }
        };
        launched.map_err(|e| GpuError::Launch { kernel: k.name.clone(), grid, block, smem, code: e.0 }.into())
    }
}

/// `cuLaunchKernelEx` with programmatic stream serialization allowed: the kernel may begin
/// before the previous kernel on the stream has finished (it waits in `griddepcontrol.wait`
/// for that kernel's results). Inside stream capture this becomes a programmatic graph edge.
///
/// # Safety
/// As `cuLaunchKernel`: `params` holds one pointer per kernel parameter, and `f` must be an
/// entry point that obeys pdl.cuh's rules.
unsafe fn launch_programmatic(
    f: sys::CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    smem: u32,
    stream: sys::CUstream,
    params: &mut [*mut c_void],
) -> std::result::Result<(), cudarc::driver::DriverError> {
    // SAFETY: an all-zero attribute is a valid value of this plain C struct.
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: grid.0,
        gridDimY: grid.1,
        gridDimZ: grid.2,
        blockDimX: block.0,
        blockDimY: block.1,
        blockDimZ: block.2,
        sharedMemBytes: smem,
        hStream: stream,
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: the caller's contract; `config` and `attr` live until the call returns.
    unsafe { sys::cuLaunchKernelEx(&config, f, params.as_mut_ptr(), std::ptr::null_mut()) }.result()
}

/// A kernel argument.
#[derive(Debug, Clone, Copy)]
pub enum Arg {
    Ptr(u64),
    I32(i32),
    U32(u32),
    F32(f32),
    U64(u64),
}

impl Arg {
    /// Device pointers as launch arguments, in the kernel's parameter order: most kernels take
    /// their buffers first, so an argument list reads `Arg::ptrs([x, w, y])` then its integers.
    pub fn ptrs<const N: usize>(p: [u64; N]) -> Vec<Arg> {
        p.into_iter().map(Arg::Ptr).collect()
    }

    /// 32-bit integer arguments from the i64 dimensions kernlab's shapes carry. The families
    /// validate their shapes against the kernels' int indexing before they launch.
    pub fn i32s<const N: usize>(v: [i64; N]) -> Vec<Arg> {
        v.into_iter().map(|v| Arg::I32(v as i32)).collect()
    }

    fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        match *self {
            Arg::Ptr(p) | Arg::U64(p) => b.copy_from_slice(&p.to_le_bytes()),
            Arg::I32(v) => b[..4].copy_from_slice(&v.to_le_bytes()),
            Arg::U32(v) => b[..4].copy_from_slice(&v.to_le_bytes()),
            Arg::F32(v) => b[..4].copy_from_slice(&v.to_le_bytes()),
        }
        b
    }
}

/// A loaded entry point (its module is unloaded on drop).
pub struct Kernel {
    module: sys::CUmodule,
    func: sys::CUfunction,
    pub name: String,
    /// The module marks this entry point PDL-aware (`KL_PDL_AWARE`, kernels/common/pdl.cuh).
    pdl: bool,
}

impl Kernel {
    fn func_attr(&self, a: sys::CUfunction_attribute) -> i32 {
        let mut v = 0i32;
        // SAFETY: valid function handle and out-pointer.
        unsafe { sys::cuFuncGetAttribute(&mut v, a, self.func) };
        v
    }
    /// Whether the template marks this entry point safe to launch early (pdl.cuh).
    pub fn pdl_aware(&self) -> bool {
        self.pdl
    }
    /// The driver's function handle (for occupancy queries).
    pub fn raw(&self) -> sys::CUfunction {
        self.func
    }
    pub fn registers(&self) -> u32 {
        self.func_attr(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_NUM_REGS) as u32
    }
    pub fn local_bytes(&self) -> u32 {
        self.func_attr(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES) as u32
    }
    pub fn static_smem(&self) -> u32 {
        self.func_attr(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES) as u32
    }
    pub fn set_max_dynamic_smem(&self, bytes: u32) -> Result<()> {
        // SAFETY: valid function handle; the driver validates the value.
        let r = unsafe {
            sys::cuFuncSetAttribute(
                self.func,
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
        };
        if r != sys::CUresult::CUDA_SUCCESS {
            let what = format!("{} asking for {bytes} B of dynamic shared memory", self.name);
            return Err(GpuError::Driver { what, code: r }.into());
        }
        Ok(())
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // SAFETY: the module was loaded by `Gpu::load` and nothing refers to it after drop.
        unsafe { cu::module::unload(self.module).ok() };
    }
}

/// A raw device allocation, freed on drop.
pub struct DevBuf {
    pub ptr: u64,
    pub bytes: usize,
    ctx: Arc<CudaContext>,
}

impl DevBuf {
    pub fn new(ctx: &Arc<CudaContext>, bytes: usize) -> Result<DevBuf> {
        ctx.bind_to_thread()?;
        // SAFETY: plain device allocation of at least one byte.
        let ptr = unsafe { cu::malloc_sync(bytes.max(1)) }
            .map_err(GpuError::driver(format!("allocating {:.1} MiB on the GPU", bytes as f64 / (1 << 20) as f64)))?;
        Ok(DevBuf { ptr, bytes, ctx: ctx.clone() })
    }
    pub fn arg(&self) -> Arg {
        Arg::Ptr(self.ptr)
    }
    /// Copies host data in (synchronously; the size must match).
    pub fn upload<T: Copy>(&self, data: &[T]) -> Result<()> {
        let n = std::mem::size_of_val(data);
        if n > self.bytes {
            bail!("upload of {n} B into a {} B buffer", self.bytes);
        }
        // SAFETY: the destination holds at least `n` bytes; T is plain data.
        Ok(unsafe { cu::memcpy_htod_sync(self.ptr, data) }.map_err(GpuError::driver("copy to the GPU"))?)
    }
    pub fn download<T: Copy + Default>(&self, count: usize) -> Result<Vec<T>> {
        let mut v = vec![T::default(); count];
        if std::mem::size_of_val(v.as_slice()) > self.bytes {
            bail!("download of {count} elements from a {} B buffer", self.bytes);
        }
        // SAFETY: the source holds at least that many bytes; T is plain data.
        unsafe { cu::memcpy_dtoh_sync(&mut v, self.ptr) }.map_err(GpuError::driver("copy from the GPU"))?;
        Ok(v)
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        self.ctx.bind_to_thread().ok();
        // SAFETY: allocated by `DevBuf::new`, freed once.
        unsafe { cu::free_sync(self.ptr).ok() };
    }
}
