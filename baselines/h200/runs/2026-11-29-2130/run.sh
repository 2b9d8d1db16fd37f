q=timestamp,index,clocks.sm,clocks.mem,power.draw,temperature.gpu,pstate
(nvidia-smi --query-gpu=$q,clocks_event_reasons.active --format=csv -l 1 || nvidia-smi --query-gpu=$q --format=csv -l 1) > /tmp/sweep/clocks.csv 2>&1 &
bash /tmp/sweep/lane0.sh > /tmp/sweep/lane0.log 2>&1 & lanes=$!
bash /tmp/sweep/lane1.sh > /tmp/sweep/lane1.log 2>&1 & lanes="$lanes $!"
wait $lanes
pkill -f "query-gpu=timestamp" 2>/dev/null
touch /tmp/sweep/all-done
