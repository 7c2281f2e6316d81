-- wrk: POST /runs/wait on the `simple` graph (a thread-less run; the thread is deleted after).
wrk.method = "POST"
wrk.body = '{"assistant_id": "simple", "input": {"n": 0}}'
wrk.headers["Content-Type"] = "application/json"
