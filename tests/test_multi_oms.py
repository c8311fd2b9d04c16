"""Discovery, several OMS instances and shards, with the real simulator and exporter processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.processes import (
    SIM_PASSWORD,
    exporter,
    get,
    metric_value,
    post_json,
    scrape,
    simulator,
    started,
    stop,
    wait_for,
)


def exported_ids(body: str, oms: str | None = None) -> set[str]:
    ids = set()
    for line in body.splitlines():
        if line.startswith("oms_project_up{") and (oms is None or f'oms="{oms}"' in line):
            match = re.search(r'project_id="([^"]+)"', line)
            if match:
                ids.add(match.group(1))
    return ids


def simulated_ids(oms_url: str) -> set[str]:
    listing = json.loads(get(oms_url + "/_sim/projects")[1])
    items = listing["projects"] if isinstance(listing, dict) else listing
    return {item["id"] for item in items if not item.get("deleted")}


def test_discovery_alone_publishes_every_project_with_its_name():
    with (
        simulator("--scenario", "bulk", "--projects", "320") as oms,
        exporter(
            oms.url, [], OMS_EXPORTER_DISCOVERY_INTERVAL="1", OMS_EXPORTER_STEP_DETAILS="false"
        ) as exp,
    ):
        expected = simulated_ids(oms.url)
        assert len(expected) == 320
        wait_for(lambda: exported_ids(scrape(exp.url)) == expected)

        def info_lines() -> list[str]:
            lines = scrape(exp.url).splitlines()
            return [line for line in lines if line.startswith("oms_project_info{")]

        wait_for(lambda: len(info_lines()) == 320)
        info = info_lines()
        body = scrape(exp.url)
        assert all('name="' in line and 'type="' in line for line in info)
        assert metric_value(body, "oms_discovery_projects") == 320

        post_json(oms.url + "/_sim/projects/p_sim_000007", {"deleted": True})
        wait_for(lambda: "p_sim_000007" not in exported_ids(scrape(exp.url)))
        post_json(oms.url + "/_sim/projects", {"id": "np_new", "kind": "migration"})
        wait_for(lambda: "np_new" in exported_ids(scrape(exp.url)))


def test_step_details_are_exported_on_4x():
    with simulator() as oms, exporter(oms.url, ["np_demo_failed", "np_demo_migration"]) as exp:
        wait_for(lambda: "oms_project_step_status{" in scrape(exp.url))
        body = scrape(exp.url)
        assert metric_value(
            body, "oms_project_step_status", project_id="np_demo_failed",
            step="FULL_TRANSFER", status="FAILED",
        ) == 1.0  # fmt: skip


def test_discovery_on_a_3_3_oms_is_refused_clearly_and_static_ids_keep_working():
    with (
        simulator("--api", "v3") as oms,
        exporter(oms.url, ["np_demo_sync"], OMS_EXPORTER_DISCOVERY="true") as exp,
    ):
        wait_for(lambda: "discovery is off" in exp.text())
        assert "4.x" in exp.text()
        wait_for(lambda: metric_value(scrape(exp.url), "oms_project_up") == 1.0)


def test_two_oms_one_down_leaves_the_other_unaffected(tmp_path: Path):
    with simulator() as first, simulator("--api", "v3") as second:
        config = tmp_path / "targets.yml"
        config.write_text(
            "poll_interval: 1\nrequest_timeout: 1\nlisten_address: 127.0.0.1:0\n"
            "targets:\n"
            f"  - name: east\n    url: {first.url}\n    username: admin\n"
            f"    password: {SIM_PASSWORD}\n    project_ids: [np_demo_sync, np_demo_failed]\n"
            f"  - name: west\n    url: {second.url}\n    username: admin\n"
            "    password_env: WEST_PASSWORD\n    project_ids: [np_demo_sync]\n"
        )
        with started(
            ["--config", str(config)],
            url_pattern=r"listening on (\S+?:\d+)",
            env={"WEST_PASSWORD": SIM_PASSWORD},
        ) as exp:
            url = "http://" + exp.url

            def both_up() -> bool:
                body = scrape(url)
                return exported_ids(body, "east") == {"np_demo_sync", "np_demo_failed"} and (
                    metric_value(body, "oms_project_up", oms="west") == 1.0
                )

            wait_for(both_up)
            stop(second.process)
            wait_for(lambda: metric_value(scrape(url), "oms_up", oms="west") == 0.0)
            body = scrape(url)
            assert metric_value(body, "oms_up", oms="east") == 1.0
            for pid in ("np_demo_sync", "np_demo_failed"):
                assert metric_value(body, "oms_project_up", oms="east", project_id=pid) == 1.0
            assert SIM_PASSWORD not in body + exp.text()


def test_two_shards_split_the_projects_with_no_overlap_and_no_gap():
    with simulator("--scenario", "bulk", "--projects", "200") as oms:
        expected = simulated_ids(oms.url)
        env = {"OMS_EXPORTER_SHARD_COUNT": "2", "OMS_EXPORTER_STEP_DETAILS": "false"}
        with (
            exporter(oms.url, [], OMS_EXPORTER_SHARD_INDEX="0", **env) as zero,
            exporter(oms.url, [], POD_NAME="oms-exporter-1", **env) as one,
        ):
            wait_for(lambda: metric_value(scrape(zero.url), "oms_exporter_poll_rounds_total"))
            wait_for(lambda: metric_value(scrape(one.url), "oms_exporter_poll_rounds_total"))
            first, second = exported_ids(scrape(zero.url)), exported_ids(scrape(one.url))
            assert first
            assert second
            assert not first & second
            assert first | second == expected
            assert metric_value(scrape(one.url), "oms_exporter_shard_ordinal") == 1.0
            assert metric_value(scrape(one.url), "oms_exporter_shard_count") == 2.0
