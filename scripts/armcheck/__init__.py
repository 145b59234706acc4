"""The aarch64 check: on-device engines and the satellite on emulated Pi CPUs.

Run ``scripts/arm-check``. The engines run under ``arm64-python3.14`` (what
Home Assistant Core runs on a 64-bit Pi) on an emulated Cortex-A72 (Pi 4);
the satellite runs under ``arm64-python3.11`` (Raspberry Pi OS 12) on an
emulated Cortex-A76 (Pi 5) against a real, natively running ``hass``. Both
interpreters come from ``shared/toolchain/ensure-arm64-emulation``
(qemu-user). Emulation proves that the code and the wheels work on aarch64;
its times are not Raspberry Pi times and are only ever printed as emulated.
"""
