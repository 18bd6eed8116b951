"""The board spec: defaults per architecture, package lists, pip options, cache keys, file names."""

import pytest

from harness.targets.board.spec import (BoardError, BoardSpec, arch_profile, deb_file_version,
                                        wheel_file_version)


def test_defaults_per_architecture():
    a64, a32 = BoardSpec("aarch64"), BoardSpec("armv7l")
    assert (a64.runtime, a64.numpy) == ("ai-edge-litert==2.3.0", "numpy<2.3")
    assert (a32.runtime, a32.numpy) == ("tflite-runtime==2.14.0", "debian")
    assert a64.python == a32.python == "3.11"


def test_packages_carry_the_debian_architecture():
    a64 = BoardSpec("aarch64").packages()
    assert "python3.11-minimal:arm64" in a64 and "dash:arm64" in a64 and "coreutils:arm64" in a64
    assert "media-types" in a64  # Architecture: all, no suffix
    assert not any(p.startswith("python3-numpy") for p in a64)
    a32 = BoardSpec("armv7l").packages()
    assert "python3-numpy:armhf" in a32 and "libblas3:armhf" in a32 and "libc6:armhf" in a32
    assert all(p.endswith(":armhf") or ":" not in p for p in a32)
    assert "libpython3.12-stdlib:arm64" in BoardSpec("aarch64", python="3.12").packages()


def test_pip_options_select_the_board_platform():
    a64 = BoardSpec("aarch64")
    args = a64.pip_platform_args()
    assert args[:5] == ("--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11")
    assert "manylinux_2_27_aarch64" in args and "--no-deps" not in args
    assert a64.pip_requirements() == ("ai-edge-litert==2.3.0", "numpy<2.3")
    a32 = BoardSpec("armv7l")
    assert "manylinux_2_34_armv7l" in a32.pip_platform_args() and "--no-deps" in a32.pip_platform_args()
    assert a32.pip_requirements() == ("tflite-runtime==2.14.0",)  # numpy comes from Debian


def test_cache_key_follows_content_only():
    base = BoardSpec("aarch64")
    assert base.cache_key() == BoardSpec("aarch64", "3.11", "ai-edge-litert==2.3.0", "numpy<2.3").cache_key()
    others = {BoardSpec("armv7l").cache_key(), BoardSpec("aarch64", python="3.12").cache_key(),
              BoardSpec("aarch64", runtime="ai-edge-litert==2.2.0").cache_key(),
              BoardSpec("aarch64", numpy="numpy<2").cache_key()}
    assert base.cache_key() not in others and len(others) == 4
    assert base.folder_name() == f"aarch64-py3.11-{base.cache_key()}"


def test_bad_specs_fail_naming_the_choices():
    with pytest.raises(BoardError, match="unknown board architecture 'riscv64'; known: aarch64, armv7l"):
        BoardSpec("riscv64")
    with pytest.raises(BoardError, match="3.N"):
        BoardSpec("aarch64", python="311")
    assert arch_profile("armv7l").qemu == "qemu-arm-static"


def test_file_names_give_versions():
    assert deb_file_version("libattr1_1%3a2.5.1-4_arm64.deb") == ("libattr1", "1:2.5.1-4")
    assert wheel_file_version("numpy-2.2.6-cp311-cp311-manylinux_2_17_aarch64.whl") == ("numpy", "2.2.6")
    with pytest.raises(BoardError):
        deb_file_version("weird.deb")
    with pytest.raises(BoardError):
        wheel_file_version("numpy-2.2.6.tar.gz")
