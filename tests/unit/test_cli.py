"""The command line refuses bad settings with one line per variable, not a traceback."""

from __future__ import annotations

import pytest

from sbo_operator.cli import main

pytestmark = pytest.mark.unit


def test_bad_settings_name_each_variable_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SBO_WORKERS", "0")
    monkeypatch.setenv("SBO_LOG_FORMAT", "xml")
    with pytest.raises(SystemExit) as exit_info:
        main(["run"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "sbo-operator: invalid setting SBO_WORKERS='0': Input should be greater than or equal to 1",
        "sbo-operator: invalid setting SBO_LOG_FORMAT='xml': Input should be 'text' or 'json'",
    ]


def test_settings_command_prints_the_effective_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SBO_NAMESPACES", "shop, billing")
    main(["settings"])
    assert '"namespaces": [\n    "shop",\n    "billing"\n  ]' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param(
            {"SBO_POSTGRES_IMAGE": "mirror.example/postgres:{version}@latest"},
            "sbo-operator: invalid setting SBO_POSTGRES_IMAGE='mirror.example/postgres:{version}@latest': "
            "Value error, gives 'mirror.example/postgres:15@latest' for version 15, but image must be an "
            "image reference",
            id="image-template",
        ),
        pytest.param(
            {"SBO_OPERATOR_NAMESPACE": "sbo-system", "SBO_OPERATOR_POD_LABELS": ""},
            "sbo-operator: invalid settings: Value error, SBO_OPERATOR_NAMESPACE and SBO_OPERATOR_POD_LABELS "
            "are set together or not at all",
            id="namespace-without-pod-labels",
        ),
    ],
)
def test_a_bad_setting_stops_the_operator_before_it_starts_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    message: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        main(["run"])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(message)
