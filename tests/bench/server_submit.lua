-- wrk script: POST /api/v1/jobs with a valid job body (tests/bench/server_wrk.sh
-- sets TOKEN, MODEL and DATASET in the environment).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"name":"bench","model_id":"' .. os.getenv("MODEL") .. '","dataset_id":"' ..
    os.getenv("DATASET") .. '","pretrain":{"epochs":1},"spec":{"version":1,"method":"admm",' ..
    '"layers":[{"match":"fc*","prune":{"scheme":"irregular","rate":8}}]}}'
