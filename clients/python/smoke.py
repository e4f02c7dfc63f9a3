"""apsched used the way a Python SDK user would: through a client generated from openapi/openapi.json.

Generate the client and run this against a running server (`.ci/clients` does all of it, with a fresh server):

    pip install -r clients/python/requirements.txt
    openapi-python-client generate --path openapi/openapi.json --meta none --output-path /tmp/py/apsched_client
    PYTHONPATH=/tmp/py APSCHED_URL=http://127.0.0.1:8080 APSCHED_TOKEN=<admin token> python clients/python/smoke.py

It adds an interval job whose webhook points at a loopback port nothing listens on, lists, pauses, resumes and
runs it, reads its runs, removes it, and reads a 422 as a typed `Problem`. Every step is checked; the first mismatch
exits non-zero. The server must allow webhooks to 127.0.0.1 (`[webhooks] allow`).
"""

import os
import sys
import time

from apsched_client import AuthenticatedClient
from apsched_client.api.jobs import (
    add_job,
    get_job,
    list_jobs,
    list_runs,
    pause_job,
    remove_job,
    resume_job,
    run_job,
)
from apsched_client.models import JobIn, JobList, JobOut, Problem, RunList, RunOut, RunStatus

JOB_ID = "smoke-python"
# Port 9 (discard) on loopback: nothing needs to answer, so the run the script starts fails fast and for certain.
WEBHOOK_URL = "http://127.0.0.1:9/x"
# How long the forced run may take to be recorded: one refused connection, well under a second in practice.
RUN_RECORDED_DEADLINE_SECONDS = 15
RUN_POLL_INTERVAL_SECONDS = 0.1


def check(condition: bool, what: str, got: object) -> None:
    if not condition:
        print(f"FAIL: {what}; got {got!r}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def main() -> None:
    client = AuthenticatedClient(base_url=os.environ["APSCHED_URL"], token=os.environ["APSCHED_TOKEN"])

    # The job is built through the generated model, so a schema the client cannot express fails here.
    job_in = JobIn.from_dict(
        {
            "id": JOB_ID,
            "name": "python smoke",
            "trigger": {"type": "interval", "hours": 1},
            "action": {"type": "http", "method": "POST", "url": WEBHOOK_URL, "json": {"from": "python"}},
        }
    )
    added = add_job.sync_detailed(client=client, body=job_in)
    check(added.status_code == 201, "add_job answers 201", added.status_code)
    job = added.parsed
    check(isinstance(job, JobOut), "add_job returns a JobOut", job)
    assert isinstance(job, JobOut)
    check(job.id == JOB_ID, "the added job has the id asked for", job.id)
    check(job.paused is False, "the added job is not paused", job.paused)
    check(bool(job.next_run_time), "the added job has a next run time", job.next_run_time)

    listed = list_jobs.sync_detailed(client=client)
    check(listed.status_code == 200, "list_jobs answers 200", listed.status_code)
    check(isinstance(listed.parsed, JobList), "list_jobs returns a JobList", listed.parsed)
    assert isinstance(listed.parsed, JobList)
    check([j.id for j in listed.parsed.jobs] == [JOB_ID], "list_jobs lists exactly the added job", listed.parsed.jobs)

    paused = pause_job.sync_detailed(JOB_ID, client=client)
    check(paused.status_code == 200, "pause_job answers 200", paused.status_code)
    check(isinstance(paused.parsed, JobOut) and paused.parsed.paused is True, "pause_job pauses", paused.parsed)
    only_paused = list_jobs.sync_detailed(client=client, paused=True)
    assert isinstance(only_paused.parsed, JobList)
    check([j.id for j in only_paused.parsed.jobs] == [JOB_ID], "list_jobs(paused=True) finds it", only_paused.parsed)

    resumed = resume_job.sync_detailed(JOB_ID, client=client)
    check(resumed.status_code == 200, "resume_job answers 200", resumed.status_code)
    assert isinstance(resumed.parsed, JobOut)
    check(resumed.parsed.paused is False, "resume_job resumes", resumed.parsed.paused)
    check(bool(resumed.parsed.next_run_time), "a resumed job has a next run time", resumed.parsed.next_run_time)

    started = run_job.sync_detailed(JOB_ID, client=client)
    check(started.status_code == 202, "run_job answers 202", started.status_code)
    check(isinstance(started.parsed, RunOut), "run_job returns a RunOut", started.parsed)

    # The run is recorded once the webhook call has been refused; wait for it, bounded.
    deadline = time.monotonic() + RUN_RECORDED_DEADLINE_SECONDS
    while True:
        runs = list_runs.sync_detailed(JOB_ID, client=client)
        check(runs.status_code == 200, "list_runs answers 200", runs.status_code)
        assert isinstance(runs.parsed, RunList)
        finished = [r for r in runs.parsed.runs if r.status not in (RunStatus.PENDING, RunStatus.RUNNING)]
        if finished or time.monotonic() > deadline:
            break
        time.sleep(RUN_POLL_INTERVAL_SECONDS)
    check(len(finished) == 1, "list_runs shows the forced run, finished", runs.parsed.runs)
    run = finished[0]
    check(run.job_id == JOB_ID, "the run belongs to the job", run.job_id)
    check(run.status == RunStatus.FAILED, "a webhook nobody answers fails", run.status)
    check(run.attempts >= 1, "the run made an attempt", run.attempts)

    removed = remove_job.sync_detailed(JOB_ID, client=client)
    check(removed.status_code == 204, "remove_job answers 204", removed.status_code)
    gone = get_job.sync_detailed(JOB_ID, client=client)
    check(gone.status_code == 404, "get_job of the removed job answers 404", gone.status_code)
    check(isinstance(gone.parsed, Problem), "the 404 is a Problem", gone.parsed)

    invalid = add_job.sync_detailed(
        client=client,
        body=JobIn.from_dict({"id": "bad id!", "action": {"type": "http", "url": WEBHOOK_URL}}),
    )
    check(invalid.status_code == 422, "an invalid id answers 422", invalid.status_code)
    problem = invalid.parsed
    check(isinstance(problem, Problem), "the 422 is a Problem", problem)
    assert isinstance(problem, Problem)
    check(problem.status == 422, "the problem's status is 422", problem.status)
    check(problem.field == "id", "the problem names the field `id`", problem.field)

    print("python client: all checks passed")


if __name__ == "__main__":
    main()
