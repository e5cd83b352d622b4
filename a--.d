-: worker/nn/train.h common/err.h common/model.h worker/nn/data.h \
 worker/nn/optim.h worker/nn/sched.h
common/err.h:
common/model.h:
worker/nn/data.h:
worker/nn/optim.h:
worker/nn/sched.h:
