"""services/dicom/config.py: the DICOM service's YAML configuration, its defaults, spellings and errors."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

from services.dicom.config import (
    AeTitle,
    ConfigError,
    Destination,
    DicomConfig,
    Export,
    Source,
    load,
    parse,
)

EXAMPLE = """\
dicom:
  scp:
    port: 11112                       # default 11112
    maximumNumberOfAssociations: 25   # default 25, range 1..1000
    rejectUnknownSources: true        # default true; only has an effect when `sources` is non-empty
    verification:
      enabled: true                   # answer C-ECHO; default true
    aeTitles:
      - name: ct-derive               # optional; defaults to the aeTitle
        aeTitle: CLARA_CT
        ignoredSopClasses: ["1.2.840.10008.5.1.4.1.1.7"]   # optional; instances of these are not stored
        sources: [PACS1]              # optional: only these calling AE titles (from dicom.scp.sources) may use this AE title
        processorSettings:
          pipeline-derive: derive     # one or more `pipeline-<key>: <pipeline id or name>`; a job per entry per batch
          priority: normal            # lower | normal | higher | immediate (case-insensitive); default normal
          grouping: study             # association (default) | study
          timeout: 5                  # seconds of quiet before a study's batch closes; default 5; giving a timeout without grouping means grouping: study
        export:                       # optional: send DICOM results back
          operators: [derive]         # operators whose outputs are searched for DICOM files (non-empty)
          destinations: [ORTHANC]     # names from dicom.scu.destinations (non-empty, each must exist)
    sources:
      - aeTitle: PACS1
        hostIp: 127.0.0.1             # optional: the association must also come from this address
  scu:
    aeTitle: CLARASCU                 # default CLARASCU
    maximumNumberOfAssociations: 2    # default 2, range 1..1000
    export:
      maximumRetries: 3               # default 3, >= 0: attempts after the first
      retryDelaySeconds: 2            # default 2, > 0; doubles after each failed attempt
    destinations:
      - name: ORTHANC
        aeTitle: ORTHANC
        hostIp: 127.0.0.1
        port: 4242
storage:
  temporary: dicom-incoming           # optional: where received instances wait; relative paths are relative to the config file's folder; absent -> None
  watermarkPercent: 85                # default 85, range (0, 100]: associations refused while the volume is fuller
  reserveSpaceGB: 5                   # default 5, >= 0: associations refused while less is free
"""  # noqa: E501 - the documented example, verbatim

MINIMAL = "dicom: {scp: {aeTitles: [{aeTitle: A, processorSettings: {pipeline-x: p}}]}}\n"


def parse_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text, "dicom.yaml")
    return str(caught.value)


def marked_line(text: str) -> int:
    """The (1-based) line of ``text`` marked ``# <-``: the line an error must name."""
    lines = [number for number, line in enumerate(text.splitlines(), start=1) if "# <-" in line]
    assert len(lines) == 1, "a case marks exactly one line"
    return lines[0]


# --- the example and defaults -----------------------------------------------------------------------------------


def test_example_parses_into_the_expected_dataclasses(tmp_path: Path) -> None:
    config = parse(EXAMPLE, "dicom.yaml", folder=tmp_path)

    assert config.port == 11112
    assert config.max_associations == 25
    assert config.reject_unknown_sources is True
    assert config.verification is True
    assert config.ae_titles == (
        AeTitle(
            ae_title="CLARA_CT",
            name="ct-derive",
            pipelines=(("derive", "derive"),),
            priority="normal",
            grouping="study",
            timeout=5.0,
            ignored_sop_classes=frozenset({"1.2.840.10008.5.1.4.1.1.7"}),
            sources=("PACS1",),
            export=Export(operators=("derive",), destinations=("ORTHANC",)),
        ),
    )
    assert config.sources == (Source(ae_title="PACS1", host="127.0.0.1"),)
    assert config.scu_ae_title == "CLARASCU"
    assert config.scu_max_associations == 2
    assert config.max_retries == 3
    assert config.retry_delay == 2.0
    assert config.destinations == (Destination(name="ORTHANC", ae_title="ORTHANC", host="127.0.0.1", port=4242),)
    assert config.storage == tmp_path / "dicom-incoming"
    assert config.watermark_percent == 85.0
    assert config.reserve_space_gb == 5.0
    assert config.ae_title("CLARA_CT") is config.ae_titles[0]
    assert config.ae_title("  CLARA_CT ") is config.ae_titles[0]
    assert config.ae_title("clara_ct") is None  # AE titles compare case-sensitively
    assert config.destination("ORTHANC") is config.destinations[0]
    assert config.destination("NOWHERE") is None


def test_the_example_in_a_different_key_order_and_with_other_values() -> None:
    text = EXAMPLE.replace("port: 11112 ", "port: 104   ").replace("priority: normal", "priority: HIGHER")
    text = text.replace("temporary: dicom-incoming", "temporary: /data/incoming")
    config = parse(text, "dicom.yaml", folder=Path("/etc/claret"))
    assert config.port == 104
    assert config.ae_titles[0].priority == "higher"  # case-insensitive, stored lower-cased
    assert config.storage == Path("/data/incoming")  # absolute: not moved under the folder


def test_relative_storage_without_a_folder_stays_relative() -> None:
    assert parse(EXAMPLE, "dicom.yaml").storage == Path("dicom-incoming")


def test_defaults_of_a_minimal_file() -> None:
    config = parse(MINIMAL, "dicom.yaml")
    assert config == DicomConfig(
        ae_titles=(
            AeTitle(
                ae_title="A",
                name="A",
                pipelines=(("x", "p"),),
                priority="normal",
                grouping="association",
                timeout=5.0,
                ignored_sop_classes=frozenset(),
                sources=(),
                export=None,
            ),
        )
    )
    assert (config.port, config.max_associations, config.scu_ae_title, config.scu_max_associations) == (
        11112,
        25,
        "CLARASCU",
        2,
    )
    assert (config.max_retries, config.retry_delay, config.watermark_percent, config.reserve_space_gb) == (
        3,
        2.0,
        85.0,
        5.0,
    )
    assert config.storage is None
    assert config.reject_unknown_sources is True
    assert config.verification is True


def test_empty_ae_titles_and_empty_sections_are_allowed() -> None:
    config = parse("dicom:\n  scp:\n    aeTitles: []\n  scu:\nstorage:\n", "dicom.yaml")
    assert config.ae_titles == ()
    assert config == DicomConfig()


def test_configuration_is_frozen() -> None:
    config = parse(MINIMAL, "dicom.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


def test_timeout_without_grouping_means_study() -> None:
    text = "dicom: {scp: {aeTitles: [{aeTitle: A, processorSettings: {pipeline-x: p, timeout: 30.5}}]}}"
    ae_title = parse(text, "dicom.yaml").ae_titles[0]
    assert (ae_title.grouping, ae_title.timeout) == ("study", 30.5)


def test_explicit_grouping_wins_over_the_timeout_default() -> None:
    settings = "{pipeline-x: p, grouping: Association, timeout: 9}"
    text = f"dicom: {{scp: {{aeTitles: [{{aeTitle: A, processorSettings: {settings}}}]}}}}"
    ae_title = parse(text, "dicom.yaml").ae_titles[0]
    assert (ae_title.grouping, ae_title.timeout) == ("association", 9.0)


def test_several_pipelines_keep_file_order_and_key_spelling() -> None:
    text = textwrap.dedent(
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:
                  pipeline-Zeta: first
                  PIPELINE-alpha: 8a2cdd7e0f8e4b3c9d1e2f3a4b5c6d7e
                  Pipeline-mid: third
        """
    )
    assert parse(text, "dicom.yaml").ae_titles[0].pipelines == (
        ("Zeta", "first"),
        ("alpha", "8a2cdd7e0f8e4b3c9d1e2f3a4b5c6d7e"),
        ("mid", "third"),
    )


def test_unquoted_scalars_are_taken_as_written_where_text_is_expected() -> None:
    # YAML 1.1 would read these as 12345, 83 (octal), False and 1.2; an AE title or a pipeline id is text.
    text = textwrap.dedent(
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: 12345
                name: NO
                ignoredSopClasses: [1.2, 1.2.3]
                processorSettings: {pipeline-x: 0123}
        """
    )
    ae_title = parse(text, "dicom.yaml").ae_titles[0]
    assert ae_title.ae_title == "12345"
    assert ae_title.name == "NO"
    assert ae_title.ignored_sop_classes == frozenset({"1.2", "1.2.3"})
    assert ae_title.pipelines == (("x", "0123"),)


def test_ae_titles_are_stored_without_surrounding_spaces() -> None:
    text = textwrap.dedent(
        """\
        dicom:
          scp:
            aeTitles: [{aeTitle: "  CT ", processorSettings: {pipeline-x: p}}]
            sources: [{aeTitle: " P "}]
        """
    )
    config = parse(text, "dicom.yaml")
    assert config.ae_titles[0].ae_title == "CT"
    assert config.ae_titles[0].name == "CT"
    assert config.sources == (Source(ae_title="P", host=None),)


# --- spellings and the adapter's appsettings.json ----------------------------------------------------------------


def test_kebab_case_and_snake_case_keys() -> None:
    text = textwrap.dedent(
        """\
        dicom:
          scp:
            maximum-number-of-associations: 7
            reject_unknown_sources: false
            ae-titles:
              - ae_title: KEBAB
                ignored-sop-classes: ["1.2.3"]
                processor-settings:
                  PIPELINE-Derive: derive
                  Priority: lower
            sources:
              - ae-title: PACS
                host_ip: 10.0.0.1
          scu:
            AE_TITLE: SENDER
            maximum_number_of_associations: 3
            export:
              maximum-retries: 0
              retry_delay_seconds: 0.5
            destinations:
              - name: D
                ae-title: DEST
                host-ip: pacs.example
                port: 104
        storage:
          watermark-percent: 90.5
          reserve_space_gb: 0
        """
    )
    config = parse(text, "dicom.yaml")
    assert config.max_associations == 7
    assert config.reject_unknown_sources is False
    assert config.ae_titles[0].ae_title == "KEBAB"
    assert config.ae_titles[0].pipelines == (("Derive", "derive"),)
    assert config.ae_titles[0].priority == "lower"
    assert config.ae_titles[0].ignored_sop_classes == frozenset({"1.2.3"})
    assert config.sources == (Source(ae_title="PACS", host="10.0.0.1"),)
    assert (config.scu_ae_title, config.scu_max_associations, config.max_retries, config.retry_delay) == (
        "SENDER",
        3,
        0,
        0.5,
    )
    assert config.destinations == (Destination(name="D", ae_title="DEST", host="pacs.example", port=104),)
    assert (config.watermark_percent, config.reserve_space_gb) == (90.5, 0.0)


APPSETTINGS = {
    "DicomAdapter": {
        "readAeTitlesFromCrd": False,
        "crdReadIntervals": 10000,
        "dicom": {
            "scp": {
                "port": 104,
                "maximumNumberOfAssociations": 100,
                "verification": {"enabled": False, "transferSyntaxes": ["1.2.840.10008.1.2.1"]},
                "logDimseDatasets": False,
                "rejectUnknownSources": False,
                "aeTitles": [
                    {
                        "name": "brain-tumor",
                        "aeTitle": "Brain-Tumor-AE",
                        "overwriteSameInstance": True,
                        "ignoredSopClasses": ["1.2.840.10008.5.1.4.1.1.7"],
                        "processor": "Nvidia.Clara.DicomAdapter.Server.Processors.AeTitleJobProcessor",
                        "processorSettings": {"timeout": 5, "priority": "Higher", "pipeline-brain": "a2b3c4"},
                    }
                ],
                "sources": [{"hostIp": "10.0.0.5", "aeTitle": "PACS1"}],
            },
            "scu": {
                "aeTitle": "ClaraSCU",
                "logDimseDatasets": False,
                "logDataPDUs": False,
                "maximumNumberOfAssociations": 4,
                "export": {"maximumRetries": 5, "failureThreshold": 0.5, "pollFrequencyMs": 500},
                "destinations": [{"name": "MYPACS", "hostIp": "10.20.100.200", "port": 1104, "aeTitle": "MONAI"}],
            },
        },
        "storage": {"temporary": "/payloads", "watermarkPercent": 75, "reserveSpaceGB": 1},
        "services": {"platform": {"endpoint": "10.104.37.94:50051"}},
    },
    "Logging": {"LogLevel": {"Default": "Information", "Microsoft": "Warning"}},
    "AllowedHosts": "*",
}


def test_dicom_adapter_appsettings_json() -> None:
    config = parse(json.dumps(APPSETTINGS, indent=2), "appsettings.json", folder=Path("/ignored"))
    assert config.port == 104
    assert config.max_associations == 100
    assert config.verification is False
    assert config.reject_unknown_sources is False
    assert config.ae_titles == (
        AeTitle(
            ae_title="Brain-Tumor-AE",
            name="brain-tumor",
            pipelines=(("brain", "a2b3c4"),),
            priority="higher",
            grouping="study",  # a timeout without grouping
            timeout=5.0,
            ignored_sop_classes=frozenset({"1.2.840.10008.5.1.4.1.1.7"}),
            sources=(),
            export=None,
        ),
    )
    assert config.sources == (Source(ae_title="PACS1", host="10.0.0.5"),)
    assert (config.scu_ae_title, config.scu_max_associations, config.max_retries) == ("ClaraSCU", 4, 5)
    assert config.destinations == (Destination(name="MYPACS", ae_title="MONAI", host="10.20.100.200", port=1104),)
    assert config.storage == Path("/payloads")
    assert (config.watermark_percent, config.reserve_space_gb) == (75.0, 1.0)


def test_errors_under_the_wrapper_name_its_key_and_the_json_line() -> None:
    settings = json.loads(json.dumps(APPSETTINGS))
    settings["DicomAdapter"]["dicom"]["scp"]["port"] = 0
    text = json.dumps(settings, indent=2)
    line = next(number for number, row in enumerate(text.splitlines(), start=1) if '"port": 0' in row)
    message = parse_error(text)
    assert message == f"dicom.yaml:{line}: DicomAdapter.dicom.scp.port: 0 is out of range 1..65535"


def test_other_top_level_keys_are_errors_without_the_wrapper() -> None:
    text = "dicom: {}\nLogging: {LogLevel: {Default: Information}}\n"
    message = parse_error(text)
    assert message.startswith("dicom.yaml:2: Logging: unknown key 'Logging'")


def test_a_typo_in_the_wrapper_section_is_an_error() -> None:
    message = parse_error('{\n  "DicomAdapter": {\n    "dicom": {},\n    "storag": {}\n  }\n}\n')
    assert message.startswith("dicom.yaml:4: DicomAdapter.storag: unknown key 'storag'; did you mean 'storage'?")


# --- errors: each names the file, the line and the key path ------------------------------------------------------

ERROR_CASES = {
    "too long AE title": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: THIS_IS_MUCH_TOO_LONG  # <-
                processorSettings: {pipeline-x: p}
        """,
        "dicom.scp.aeTitles[0].aeTitle",
        "'THIS_IS_MUCH_TOO_LONG' is longer than 16 characters",
    ),
    "AE title with a backslash": (
        """\
        dicom:
          scp:
            aeTitles:
              - processorSettings: {pipeline-x: p}
                aeTitle: 'A\\B'  # <-
        """,
        "dicom.scp.aeTitles[0].aeTitle",
        "'A\\\\B' contains a backslash",
    ),
    "AE title with a control character": (
        """\
        dicom:
          scp:
            aeTitles:
              - processorSettings: {pipeline-x: p}
                aeTitle: "A\\tB"  # <-
        """,
        "dicom.scp.aeTitles[0].aeTitle",
        "'A\\tB' contains a control character",
    ),
    "AE title of spaces only": (
        """\
        dicom:
          scu:
            aeTitle: "    "  # <-
        """,
        "dicom.scu.aeTitle",
        "an AE title must not be empty or only spaces",
    ),
    "duplicate AE title": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: CT
                processorSettings: {pipeline-x: p}
              - aeTitle: CT  # <-
                name: other
                processorSettings: {pipeline-y: q}
        """,
        "dicom.scp.aeTitles[1].aeTitle",
        "AE title 'CT' is already used by dicom.scp.aeTitles[0].aeTitle",
    ),
    "duplicate name": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: CT
                processorSettings: {pipeline-x: p}
              - aeTitle: MR
                name: CT  # <-
                processorSettings: {pipeline-y: q}
        """,
        "dicom.scp.aeTitles[1].name",
        "name 'CT' is already used by dicom.scp.aeTitles[0].aeTitle",
    ),
    "missing aeTitle": (
        """\
        dicom:
          scp:
            aeTitles:
              - name: nameless  # <-
                processorSettings: {pipeline-x: p}
        """,
        "dicom.scp.aeTitles[0]",
        "missing required key 'aeTitle'",
    ),
    "missing processorSettings": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A  # <-
        """,
        "dicom.scp.aeTitles[0]",
        "missing required key 'processorSettings'",
    ),
    "missing pipeline": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:  # <-
                  priority: higher
        """,
        "dicom.scp.aeTitles[0].processorSettings",
        "needs at least one `pipeline-<key>: <pipeline>` entry",
    ),
    "empty pipeline value": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:
                  pipeline-x: ""  # <-
        """,
        "dicom.scp.aeTitles[0].processorSettings.pipeline-x",
        "must not be empty",
    ),
    "pipeline key without a name": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:
                  pipeline-: p  # <-
        """,
        "dicom.scp.aeTitles[0].processorSettings.pipeline-",
        "needs a key after 'pipeline-'",
    ),
    "repeated pipeline key": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:
                  pipeline-x: p
                  PIPELINE-x: q  # <-
        """,
        "dicom.scp.aeTitles[0].processorSettings.PIPELINE-x",
        "repeats the pipeline key 'x'",
    ),
    "bad priority": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:
                  pipeline-x: p
                  priority: urgent  # <-
        """,
        "dicom.scp.aeTitles[0].processorSettings.priority",
        "'urgent' is not one of: lower, normal, higher, immediate",
    ),
    "bad grouping": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:
                  pipeline-x: p
                  grouping: series  # <-
        """,
        "dicom.scp.aeTitles[0].processorSettings.grouping",
        "'series' is not one of: association, study",
    ),
    "zero timeout": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:
                  pipeline-x: p
                  timeout: 0  # <-
        """,
        "dicom.scp.aeTitles[0].processorSettings.timeout",
        "0 is not greater than 0",
    ),
    "timeout not a number": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:
                  pipeline-x: p
                  timeout: soon  # <-
        """,
        "dicom.scp.aeTitles[0].processorSettings.timeout",
        "expected a number, got a string ('soon')",
    ),
    "unknown key in processorSettings": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings:
                  pipeline-x: p
                  pipline-y: q  # <-
        """,
        "dicom.scp.aeTitles[0].processorSettings.pipline-y",
        "unknown key 'pipline-y'",
    ),
    "bad SOP class": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings: {pipeline-x: p}
                ignoredSopClasses:
                  - 1.2.840.10008.5.1.4.1.1.7
                  - CT Image Storage  # <-
        """,
        "dicom.scp.aeTitles[0].ignoredSopClasses[1]",
        "'CT Image Storage' is not a UID (digits separated by dots)",
    ),
    "unknown destination in export": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings: {pipeline-x: p}
                export:
                  operators: [derive]
                  destinations:
                    - ORTHANC
                    - NOWHERE  # <-
          scu:
            destinations:
              - {name: ORTHANC, aeTitle: ORTHANC, hostIp: 127.0.0.1, port: 4242}
        """,
        "dicom.scp.aeTitles[0].export.destinations[1]",
        "'NOWHERE' is not a name of dicom.scu.destinations (ORTHANC)",
    ),
    "empty export operators": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings: {pipeline-x: p}
                export:
                  operators: []  # <-
                  destinations: [ORTHANC]
          scu:
            destinations:
              - {name: ORTHANC, aeTitle: ORTHANC, hostIp: 127.0.0.1, port: 4242}
        """,
        "dicom.scp.aeTitles[0].export.operators",
        "expected a non-empty list",
    ),
    "export without destinations": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings: {pipeline-x: p}
                export:  # <-
                  operators: [derive]
        """,
        "dicom.scp.aeTitles[0].export",
        "missing required key 'destinations'",
    ),
    "unknown source in per-AE sources": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings: {pipeline-x: p}
                sources:
                  - PACS1
                  - PACS9  # <-
            sources:
              - aeTitle: PACS1
        """,
        "dicom.scp.aeTitles[0].sources[1]",
        "'PACS9' is not an aeTitle of dicom.scp.sources (PACS1)",
    ),
    "per-AE sources without any sources": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                processorSettings: {pipeline-x: p}
                sources: [PACS1]  # <-
        """,
        "dicom.scp.aeTitles[0].sources[0]",
        "'PACS1' is not an aeTitle of dicom.scp.sources (none are defined)",
    ),
    "port 0": (
        """\
        dicom:
          scp:
            port: 0  # <-
        """,
        "dicom.scp.port",
        "0 is out of range 1..65535",
    ),
    "port true": (
        """\
        dicom:
          scp:
            port: true  # <-
        """,
        "dicom.scp.port",
        "expected an integer, got a boolean (true)",
    ),
    "port as text": (
        """\
        dicom:
          scp:
            port: "104"  # <-
        """,
        "dicom.scp.port",
        "expected an integer, got a string ('104')",
    ),
    "destination port too high": (
        """\
        dicom:
          scu:
            destinations:
              - name: D
                aeTitle: D
                hostIp: 127.0.0.1
                port: 65536  # <-
        """,
        "dicom.scu.destinations[0].port",
        "65536 is out of range 1..65535",
    ),
    "destination without hostIp": (
        """\
        dicom:
          scu:
            destinations:
              - name: D  # <-
                aeTitle: D
                port: 104
        """,
        "dicom.scu.destinations[0]",
        "missing required key 'hostIp'",
    ),
    "empty hostIp": (
        """\
        dicom:
          scp:
            sources:
              - aeTitle: P
                hostIp: ""  # <-
        """,
        "dicom.scp.sources[0].hostIp",
        "must not be empty",
    ),
    "duplicate destination name": (
        """\
        dicom:
          scu:
            destinations:
              - {name: D, aeTitle: D1, hostIp: 127.0.0.1, port: 104}
              - {name: D, aeTitle: D2, hostIp: 127.0.0.1, port: 105}  # <-
        """,
        "dicom.scu.destinations[1].name",
        "destination name 'D' is already used by dicom.scu.destinations[0].name",
    ),
    "too many associations": (
        """\
        dicom:
          scp:
            maximumNumberOfAssociations: 1001  # <-
        """,
        "dicom.scp.maximumNumberOfAssociations",
        "1001 is out of range 1..1000",
    ),
    "negative retries": (
        """\
        dicom:
          scu:
            export:
              maximumRetries: -1  # <-
        """,
        "dicom.scu.export.maximumRetries",
        "-1 is less than 0",
    ),
    "zero retry delay": (
        """\
        dicom:
          scu:
            export:
              retryDelaySeconds: 0  # <-
        """,
        "dicom.scu.export.retryDelaySeconds",
        "0 is not greater than 0",
    ),
    "watermark over 100": (
        """\
        storage:
          watermarkPercent: 101  # <-
        """,
        "storage.watermarkPercent",
        "101 is not in (0, 100]",
    ),
    "watermark 0": (
        """\
        storage:
          watermarkPercent: 0  # <-
        """,
        "storage.watermarkPercent",
        "0 is not in (0, 100]",
    ),
    "negative reserve": (
        """\
        storage:
          reserveSpaceGB: -1  # <-
        """,
        "storage.reserveSpaceGB",
        "-1 is less than 0",
    ),
    "infinite reserve": (
        """\
        storage:
          reserveSpaceGB: .inf  # <-
        """,
        "storage.reserveSpaceGB",
        "inf is not a finite number",
    ),
    "boolean as text": (
        """\
        dicom:
          scp:
            rejectUnknownSources: "false"  # <-
        """,
        "dicom.scp.rejectUnknownSources",
        "expected true or false, got a string ('false')",
    ),
    "unknown key typo": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitel: A  # <-
                processorSettings: {pipeline-x: p}
        """,
        "dicom.scp.aeTitles[0].aeTitel",
        "unknown key 'aeTitel'; did you mean 'aeTitle'?",
    ),
    "unknown top-level key": (
        """\
        dicom: {}
        storgae: {}  # <-
        """,
        "storgae",
        "unknown key 'storgae'; did you mean 'storage'?",
    ),
    "adapter key in the wrong section": (
        """\
        dicom:
          scp:
            failureThreshold: 0.5  # <-
        """,
        "dicom.scp.failureThreshold",
        "unknown key 'failureThreshold'",
    ),
    "one key in two spellings": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: A
                ae-title: B  # <-
                processorSettings: {pipeline-x: p}
        """,
        "dicom.scp.aeTitles[0].ae-title",
        "repeats the key 'aeTitle'",
    ),
    "string for aeTitles": (
        """\
        dicom:
          scp:
            aeTitles: CLARA_CT  # <-
        """,
        "dicom.scp.aeTitles",
        "expected a list, got a string ('CLARA_CT')",
    ),
    "list for scp": (
        """\
        dicom:
          scp:  # <-
            - port: 104
        """,
        "dicom.scp",
        "expected a mapping, got a list",
    ),
    "mapping for an AE title": (
        """\
        dicom:
          scp:
            aeTitles:
              - aeTitle: {name: A}  # <-
                processorSettings: {pipeline-x: p}
        """,
        "dicom.scp.aeTitles[0].aeTitle",
        "expected a string, got a mapping",
    ),
    "nothing for a port": (
        """\
        dicom:
          scp:
            port:  # <-
        """,
        "dicom.scp.port",
        "expected an integer, got nothing",
    ),
}


@pytest.mark.parametrize(("text", "path", "message"), list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_error_names_line_and_key_path(text: str, path: str, message: str) -> None:
    text = textwrap.dedent(text)
    error = parse_error(text)
    prefix = f"dicom.yaml:{marked_line(text)}: {path}: "
    assert error.startswith(prefix), error
    assert message in error[len(prefix) :], error


YAML_ERROR_CASES = {
    "mapping value where none may be": ("dicom:\n  scp:\n    port: 1: 2\n", 3, "mapping values are not allowed here"),
    "bad indentation": ("dicom:\n  scp:\n    port: 1\n   bad: 2\n", 4, "invalid YAML"),
    "repeated key": ("dicom:\n  scp: {}\n  scu: {}\n  scp: {}\n", 4, "duplicate key 'scp'"),
    "unprintable character": ("dicom:\n  scp: {}\n  x: \x01\n", 3, "special characters are not allowed"),
    "two documents": ("dicom: {}\n---\ndicom: {}\n", 2, "expected a single document"),
    "empty file": ("", 1, "the file is empty"),
    "only comments": ("# nothing yet\n\n# still nothing\n", 1, "the file is empty"),
    "a list, not a mapping": ("\n- dicom\n", 2, "expected a mapping with a `dicom` section, got a list"),
    "a string, not a mapping": ("dicom\n", 1, "expected a mapping with a `dicom` section, got a string ('dicom')"),
}


@pytest.mark.parametrize(("text", "line", "message"), list(YAML_ERROR_CASES.values()), ids=list(YAML_ERROR_CASES))
def test_document_errors_name_the_line(text: str, line: int, message: str) -> None:
    error = parse_error(text)
    assert error.startswith(f"dicom.yaml:{line}: "), error
    assert message in error, error


def test_the_first_error_is_reported() -> None:
    text = "dicom:\n  scp:\n    port: 0\n    maximumNumberOfAssociations: 0\n"
    assert parse_error(text) == "dicom.yaml:3: dicom.scp.port: 0 is out of range 1..65535"


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- load ------------------------------------------------------------------------------------------------------


def test_load_reads_the_file_and_resolves_storage_next_to_it(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "dicom.yaml"
    path.parent.mkdir()
    path.write_text(EXAMPLE, encoding="utf-8")
    config = load(path)
    assert config.storage == tmp_path / "conf" / "dicom-incoming"
    assert config.ae_titles[0].ae_title == "CLARA_CT"


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load(missing)
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("dicom:\n  scp:\n    port: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(invalid)
    assert str(caught.value) == f"{invalid}:3: dicom.scp.port: 0 is out of range 1..65535"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"dicom: \xff\n")
    with pytest.raises(ConfigError, match=r"binary\.yaml: not UTF-8 text"):
        load(binary)


# --- calling_refusal -------------------------------------------------------------------------------------------


def ae(sources: tuple[str, ...] = ()) -> AeTitle:
    return AeTitle(
        ae_title="CLARA_CT",
        name="ct",
        pipelines=(("x", "p"),),
        priority="normal",
        grouping="association",
        timeout=5.0,
        ignored_sop_classes=frozenset(),
        sources=sources,
        export=None,
    )


SOURCES = (Source(ae_title="PACS1", host="127.0.0.1"), Source(ae_title="PACS2", host=None))


def test_no_sources_accepts_anyone() -> None:
    assert DicomConfig().calling_refusal(ae(), "ANYONE", "10.0.0.9") is None


def test_unknown_calling_ae_title_is_refused() -> None:
    why = DicomConfig(sources=SOURCES).calling_refusal(ae(), "EVIL", "10.0.0.9")
    assert why is not None
    assert "calling AE title 'EVIL' is not a known source" in why
    assert "10.0.0.9" in why


def test_unknown_sources_are_accepted_when_not_rejected() -> None:
    config = DicomConfig(sources=SOURCES, reject_unknown_sources=False)
    assert config.calling_refusal(ae(), "EVIL", "10.0.0.9") is None


def test_known_source_from_another_host_is_refused() -> None:
    why = DicomConfig(sources=SOURCES).calling_refusal(ae(), "PACS1", "10.0.0.9")
    assert why is not None
    assert "'PACS1'" in why
    assert "10.0.0.9" in why


def test_known_source_from_its_host_is_accepted() -> None:
    config = DicomConfig(sources=SOURCES)
    assert config.calling_refusal(ae(), "PACS1", "127.0.0.1") is None
    assert config.calling_refusal(ae(), "PACS1  ", "::ffff:127.0.0.1") is None  # padded; IPv4-mapped IPv6
    assert config.calling_refusal(ae(), "PACS2", "192.168.1.1") is None  # no host given: any address


def test_calling_ae_titles_compare_case_sensitively() -> None:
    assert DicomConfig(sources=SOURCES).calling_refusal(ae(), "pacs2", "192.168.1.1") is not None


def test_same_ae_title_listed_for_two_hosts() -> None:
    config = DicomConfig(sources=(Source("PACS1", "10.0.0.1"), Source("PACS1", "10.0.0.2")))
    assert config.calling_refusal(ae(), "PACS1", "10.0.0.2") is None
    assert config.calling_refusal(ae(), "PACS1", "10.0.0.3") is not None


def test_per_ae_title_sources_restrict_callers() -> None:
    config = DicomConfig(sources=SOURCES)
    called = ae(sources=("PACS1",))
    assert config.calling_refusal(called, "PACS1", "127.0.0.1") is None
    why = config.calling_refusal(called, "PACS2", "10.0.0.7")
    assert why is not None
    assert "'PACS2'" in why
    assert "10.0.0.7" in why
    assert "'CLARA_CT'" in why


def test_per_ae_title_sources_apply_even_when_unknown_sources_are_accepted() -> None:
    config = DicomConfig(sources=SOURCES, reject_unknown_sources=False)
    assert config.calling_refusal(ae(sources=("PACS1",)), "PACS2", "10.0.0.7") is not None
    assert config.calling_refusal(ae(sources=("PACS1",)), "PACS1", "10.0.0.7") is None  # host not checked


@pytest.mark.parametrize("operator", ["../other-payload", "/", "a/b", ".."])
def test_an_export_operator_must_be_a_name_not_a_path(operator: str) -> None:
    text = (
        "dicom:\n  scp:\n    aeTitles:\n      - aeTitle: A\n        processorSettings: {pipeline-x: p}\n"
        f"        export: {{operators: [{json.dumps(operator)}], destinations: [D]}}\n"
        "  scu:\n    destinations: [{name: D, aeTitle: D, hostIp: 127.0.0.1, port: 104}]\n"
    )
    with pytest.raises(ConfigError, match="is not an operator name"):
        parse(text, "dicom.yaml")


def test_a_source_address_must_be_an_ip_address() -> None:
    text = (
        "dicom:\n  scp:\n    aeTitles: [{aeTitle: A, processorSettings: {pipeline-x: p}}]\n"
        "    sources:\n      - aeTitle: PACS\n        hostIp: pacs.example\n"
    )
    with pytest.raises(ConfigError, match=r"dicom.yaml:6: dicom.scp.sources\[0\].hostIp: 'pacs.example' is not an IP"):
        parse(text, "dicom.yaml")
