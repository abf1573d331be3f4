-- wrk request for REST Predict of half_plus_two (used by bench/run.sh).
wrk.method = "POST"
wrk.body = '{"instances": [1.0, 2.0, 5.0]}'
wrk.headers["Content-Type"] = "application/json"
