"""The README of a microcontroller bundle: only what the bundle holds and what its core has, every size measured.

Two engines: the generated C99 engine (``engine`` section of the manifest) and TFLite Micro (``mcu`` section). Both
share the crop / quantise / decode library and the same verified int8 trunk graph."""

from __future__ import annotations

from c3ae_edge.export.manifest import Manifest

ESP_ARCHES = ("xtensa-lx7", "rv32imc")


def _files(folder, names: list[str], what: dict[str, str]) -> str:
    rows = [f"| `{n}` | {(folder / n).stat().st_size:,} | {what.get(n, '')} |" for n in names if (folder / n).exists()]
    return "| file | bytes | what |\n|---|---|---|\n" + "\n".join(rows)


def _intro(man: Manifest, engine: str) -> str:
    t = man.target
    art = man.primary_artifact
    kind = "the generated C99 engine" if engine == "c99" else "TensorFlow Lite for Microcontrollers"
    return f"""# {man.model["name"]} for {t["name"]} ({kind})

{t["description"]}. Built by c3ae-edge {man.toolchain["c3ae-edge"]} at {man.build["time"]}.
Weights sha256 `{man.model["weights_sha256"]}`.

The verified graph `{art["file"]}` is the **trunk only**: one crop in (int8 {art["input"]["shape"]}), its int8
features out ("{art["outputs"][0]["name"]}", {art["outputs"][0]["shape"]}); it runs once per crop \
({len(man.crop["scales"])} per face) and `c3ae_decode()` turns the features of every crop into the age (W1, softmax,
W2 in float). `manifest.json` holds every figure below as data; `SHA256SUMS` covers every file.
"""


def _counter(t: dict) -> str:
    hz = t.get("cpu_hz")
    clock = f" at {hz / 1e6:g} MHz (`C3AE_CPU_HZ` in `c3ae_model.h`)" if hz else ""
    if t["arch"] == "xtensa-lx7":
        how = "the Xtensa CCOUNT register, read by ESP-IDF's `esp_cpu_get_cycle_count()` (`esp_cpu.h`)"
    elif t["arch"] == "rv32imc":
        how = "the ESP32-C3's performance counter, read by ESP-IDF's `esp_cpu_get_cycle_count()` (`esp_cpu.h`)"
    else:
        how = "the DWT cycle counter (`DEMCR |= 1 << 24; DWT_CTRL |= 1;` then read `DWT_CYCCNT` at 0xE0001004)"
    return f"Cycles on the board: {how}{clock}; seconds = cycles / C3AE_CPU_HZ."


def _esp_idf(t: dict, sources: list[str], tflm: bool) -> str:
    if t["arch"] not in ESP_ARCHES:
        return ""
    dep = (
        '\nand add TFLite Micro: `idf.py add-dependency "espressif/esp-tflite-micro"` (esp-nn kernels); '
        "`main.cc` defines `app_main()` under ESP-IDF.\n"
        if tflm
        else "\n"
    )
    srcs = " ".join(f'"{s}"' for s in sources if s.endswith((".c", ".cc")))
    return f"""## ESP-IDF

Copy the sources into a component (`components/c3ae/`) with this `CMakeLists.txt`:

```
idf_component_register(SRCS {srcs}
                       INCLUDE_DIRS ".")
```
{dep}Keep the {"tensor arena" if tflm else "work buffer"} in internal SRAM (a `static` array is), not in PSRAM: every
multiply reads it. The frame may sit in PSRAM.
"""


def _verify(man: Manifest) -> str:
    art = man.primary_artifact
    v = art["verification"]
    return f"""## Verification at export

{man.verification["faces"]} real faces of {man.verification["source"]} (none used for calibration): the graph under
TFLite Micro's reference kernels gives MAE {v["mae"]} years (PyTorch {v["pytorch_mae"]}), max |age - PyTorch|
{v["max_abs_diff_vs_pytorch"]} years per face (tolerance {art["tolerance_years"]}). `c3ae-edge verify <this folder>`
rechecks the checksums, re-runs the graph on the parity faces (`{man.parity_set["file"]}`) against the golden
features in `manifest.json`{
        ", and builds and runs this engine on this host against the same golden features"
        if "engine" in man.extras
        else ""
    }.
"""


def _output(man: Manifest) -> str:
    out = man.primary_artifact["outputs"][0]
    return f"""## Output

The graph's output is "{out["name"]}" ({out["shape"]}, int8, scale {out["scale"]:.9g}, zero point
{out["zero_point"]}), per crop; `c3ae_decode(features, bins)` returns the age in years and fills the 12-bin
distribution (bins may be NULL). There is no "age" or "bins" tensor in this graph.
"""


def _integrate(e: dict) -> str:
    return f"""## Integrate (C99, no runtime library, no heap)

Add `c3ae_engine.c c3ae_engine_model.c c3ae_mcu.c c3ae_mcu_model.c` to your build (C99, link libm), then:

```c
#include "c3ae_engine.h"

static uint32_t work[C3AE_ENGINE_WORK_BYTES / 4];  /* {e["work_bytes"]:,} bytes of SRAM, reused by every call */

float face_age(const uint8_t *rgb, int width, int height, double cx, double cy, double side)
{{
    c3ae_box box = {{cx, cy, side}};  /* square face box in frame pixels, from your detector */
    float age = -1.0f;
    if (c3ae_age(rgb, width, height, width * 3, &box, work, &age) != 0) return -1.0f;  /* bad arguments */
    return age;
}}
```
`c3ae_features()` gives the int8 features of every crop (then `c3ae_decode(features, bins)` gives the 12-bin
distribution too) and `c3ae_trunk()` runs one already quantised crop. The crops are cut from the frame row by row
and run one after another in `work`; only their features stay. The engine needs `>>` on negative integers to be
arithmetic (every mainstream compiler does it).
"""


def _memory(e: dict, arena: int | None) -> str:
    p = e["plan"]
    rows = "\n".join(
        f"| {r['layer']} | {r['op']} | {' x '.join(map(str, r['output']))} | "
        f"{'all' if r['kept_whole'] else r['rows_held']} | {r['bytes']:,} |"
        for r in p["layers"]
    )
    cands = "\n".join(
        f"| {', '.join(map(str, c['kept_layers']))} | {c['work_bytes']:,} | {c['macs']:,} | {c['recompute']:+.1%} |"
        for c in p["candidates"]
    )
    vs = f" (TFLite Micro needs a {arena:,}-byte arena for the same graph, measured)" if arena else ""
    return f"""## Memory (measured at export)

Work buffer: **{e["work_bytes"]:,} bytes** (`C3AE_ENGINE_WORK_BYTES`){vs}, for all crops of a face. Layers hold only
the rows the next kernel needs; a squeeze-excite block on a streamed layer takes its channel means in a first pass
and the layers are recomputed ({p["recompute"]:+.1%} multiply-accumulates: {p["macs_per_crop"]:,} per crop vs
{p["graph_macs_per_crop"]:,} in the graph; passes {p["passes"]}).

| layer | op | output (H x W x C) | rows held | bytes |
|---|---|---|---|---|
{rows}

Other plans the export costed (fewest bytes for each MAC count; `engine_plan = "fastest"` in a target file picks the
fewest MACs within its `work_bytes` budget):

| kept whole | work bytes | MACs per crop | recompute |
|---|---|---|---|
{cands}
"""


def _flash(e: dict, target: dict) -> str:
    rows = []
    for core, r in e["flash"]["cores"].items():
        if "total" in r:
            t = r["total"]
            rows.append(
                f"| {core} | {r['compiler']} | {t['text']:,} | {t['rodata']:,} | {t['data']:,} | {r['flash']:,} |"
            )
        else:
            rows.append(f"| {core} | {r['status']} | | | | |")
    return f"""## Flash (engine + weights + head + crop library, `{" ".join(e["flash"]["flags"])}`)

| core | compiler | .text | .rodata | .data | flash |
|---|---|---|---|---|---|
{chr(10).join(rows)}

`make sizes` prints the same per object file.{_not_measured(target)}
"""


def _not_measured(t: dict) -> str:
    if t["arch"] != "xtensa-lx7":
        return ""
    return (
        "\nThe ESP32-S3's Xtensa LX7 compiler (ESP-IDF's `xtensa-esp32s3-elf-gcc`) is not run at export and no Xtensa"
        "\ncore is emulated: the rows above are the same C on the cores that are; `idf.py size-components` gives yours."
    )


def _selftest(e: dict) -> str:
    st = e["selftest"]
    rows = []
    for core, r in st["cores"].items():
        if "instructions_per_inference" in r:
            rows.append(
                f"| {core} | `{r['emulator']}` | bit-exact | {r['instructions_per_inference']:,} | "
                f"{r['trunk_instructions_per_crop']:,} |"
            )
        else:
            rows.append(f"| {core} | | {r['status']} | | |")
    return f"""## Self-test on emulated cores

`selftest.c` runs the engine on {len(st["faces"])} real faces embedded as {st["frame"]} frames with their boxes
(`selftest_data.c`) in a work buffer of exactly `C3AE_ENGINE_WORK_BYTES` bytes between guard words, compares every
crop's features with TFLite Micro's for the same crops, and ends with one JSON line (`faces`, `bit_exact`,
`instructions`, `work_bytes`, `guard_intact`, ...):

    make host-test     # this machine
    make qemu-m4       # Cortex-M4F: qemu-system-arm -M mps2-an386
    make qemu-m7       # Cortex-M7:  qemu-system-arm -M mps2-an500
    make qemu-rv32     # RV32IMC:    qemu-system-riscv32 -M virt

Debian packages: `gcc-arm-none-eabi picolibc-arm-none-eabi qemu-system-arm gcc-riscv64-unknown-elf
picolibc-riscv64-unknown-elf qemu-system-misc`. At export:

| core | emulator | features | instructions per face (all crops + head) | trunk per crop |
|---|---|---|---|---|
{chr(10).join(rows)}

These are **emulated instruction counts, not time**: {st["method"]}. No pipeline, cache or flash wait state is
modelled; a board's cycles per instruction differ by core and memory.
"""


def engine_readme(folder, man: Manifest, e: dict, arena: int | None) -> str:
    from c3ae_edge.export.firmware import preprocessing, pull_section

    x = e["exactness"]
    what = {
        man.primary_artifact["file"]: "the verified int8 trunk graph (TFLite) the engine was generated from",
        "c3ae_engine.h": "the API: c3ae_age(), c3ae_features(), c3ae_trunk()",
        "c3ae_engine.c": "the executor: integer kernels, row rings, passes",
        "c3ae_engine_model.c": "generated: weights, biases, multipliers, tables, the memory plan (const)",
        "c3ae_mcu.c": "crop (row by row), quantise, decode (the head in float)",
        "c3ae_mcu_model.c": "generated: crop scales, normalisation, head weights",
        "selftest.c": "self-test firmware / host program",
        "selftest_data.c": "the self-test's frames, boxes and TFLite Micro's features",
        "Makefile": "host-test, qemu-m4, qemu-m7, qemu-rv32, sizes",
    }
    return "\n".join(
        [
            _intro(man, "c99"),
            _files(folder, e["sources"] + [man.primary_artifact["file"]], what),
            "",
            _integrate(e),
            f"""## Exactness

The engine's int8 features equal TFLite Micro's reference kernels' bit for bit on all {x["faces"]} verification
faces ({x["crops"]} crops, {x["bit_exact_faces"]} of {x["faces"]} faces exact, largest difference
{x["max_lsb_per_face"]} LSB): the same int32 accumulation, per-channel fixed-point requantisation and rounding,
integer mean, and TFLite's LOGISTIC and QUANTIZE as 256-entry tables computed with its fixed-point arithmetic.
""",
            _memory(e, arena),
            _flash(e, man.target),
            _selftest(e),
            "## On the board\n\n" + _counter(man.target) + "\n",
            _esp_idf(man.target, e["sources"], tflm=False),
            preprocessing(man),
            _output(man),
            _verify(man),
            pull_section(man),
        ]
    )


def _tflm_build(mcu: dict, art: dict, t: dict) -> str:
    cc = mcu["cross_compile"]
    sizes = "\n".join(
        f"| {c} | {v['total']['text']:,} | {v['total']['rodata']:,} | {v['total']['data']} | {v['total']['bss']} |"
        for c, v in cc.get("cores", {}).items()
    )
    table = (
        "The C library and the model arrays, cross-compiled at export with "
        f"`arm-none-eabi-gcc {cc['compiler']} {' '.join(cc['flags'])}` (core flags in `manifest.json`):\n\n"
        "| core | .text | .rodata | .data | .bss |\n|---|---|---|---|---|\n" + sizes
        if sizes
        else f"Code sizes: {cc.get('status', 'not measured')}."
    )
    ver = (art.get("runtimes", {}).get("tflite-micro/reference") or {}).get("version") or "?"
    kernels = "esp-nn (esp-tflite-micro)" if t["arch"] == "xtensa-lx7" else "CMSIS-NN"
    return f"""## TensorFlow Lite for Microcontrollers

- tensor arena: **{mcu["arena"]["bytes"]:,} bytes** (measured: the smallest that works; `C3AE_TFLM_ARENA_BYTES`)
- model flash: {mcu["flash"]["model_bytes"]:,} bytes (flatbuffer {mcu["flash"]["flatbuffer_bytes"]:,} \
+ head {mcu["flash"]["head_bytes"]:,})
- ops ({sum(mcu["ops"].values())}): {", ".join(f"{k} x{v}" for k, v in mcu["ops"].items())}; \
`c3ae_ops.h` registers exactly these
- verified with the tflite-micro Python package {ver} (TFLite Micro's reference kernels); build against TFLite
  Micro sources of that date. On the board, {kernels} kernels run instead and may differ from the reference by a
  step: compare your features with the golden ones in `manifest.json`.
- `main.cc` (C++17): crops, quantises, invokes the trunk once per crop, decodes, prints one JSON line with cycles.

{table}
"""


def tflm_readme(folder, man: Manifest, mcu: dict) -> str:
    from c3ae_edge.export.firmware import preprocessing, pull_section

    art = man.primary_artifact
    what = {
        art["file"]: "the verified int8 trunk graph (also as an array in c3ae_mcu_model.c)",
        art["files"][1]: "the head's weights (also in c3ae_mcu_model.c)",
        "c3ae_mcu.c": "crop, quantise, decode (the head in float)",
        "c3ae_mcu_model.c": "generated: the flatbuffer (16-byte aligned), crop scales, head weights",
        "c3ae_ops.h": "the op resolver: exactly the graph's operators",
        "main.cc": "on-board runner (TFLite Micro MicroInterpreter)",
        "c3ae_model.h": "constants, the measured arena",
    }
    names = [art["file"], art["files"][1], *mcu["sources"]]
    return "\n".join(
        [
            _intro(man, "tflm"),
            _files(folder, sorted(set(names)), what),
            "",
            _tflm_build(mcu, art, man.target),
            "## On the board\n\n" + _counter(man.target) + "\n",
            _esp_idf(man.target, mcu["sources"], tflm=True),
            preprocessing(man),
            _output(man),
            _verify(man),
            pull_section(man),
        ]
    )
