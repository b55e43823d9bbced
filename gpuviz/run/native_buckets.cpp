// A c10d backend that passes every call on to another backend (the job's gloo backend)
// and, for each all-reduce, keeps its launch and completion times (steady clock, ns: the
// clock of Python's time.perf_counter_ns on Linux) and bytes in C++. DDP given a group
// with this backend keeps its own path (no comm hook) and runs no Python per bucket;
// gpuviz/run/native_buckets.py builds it and turns the times into spans at each step's end.
// benchmarks/ddp_bucket_routes.py measures it ("native + end"; "native" records nothing).
// Only the headers it needs (not torch/extension.h, the whole C++ API): it compiles in
// less than half the time.
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using c10d::Backend;
using c10d::Work;
using Ptr = c10::intrusive_ptr<Work>;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The inner all-reduce's Work, whose future completes only once the all-reduce's times
// are kept: whoever waits on it (DDP, before its backward returns) finds them there.
class KeptWork : public Work {
 public:
  KeptWork(Ptr inner, c10::intrusive_ptr<c10::ivalue::Future> kept)
      : inner_(std::move(inner)), kept_(std::move(kept)) {}

  bool isCompleted() override { return kept_->completed(); }
  bool isSuccess() const override { return inner_->isSuccess(); }
  std::exception_ptr exception() const override { return inner_->exception(); }
  int sourceRank() const override { return inner_->sourceRank(); }
  std::vector<at::Tensor> result() override { return inner_->result(); }
  void synchronize() override { inner_->synchronize(); }
  bool wait(std::chrono::milliseconds timeout) override {
    const bool done = inner_->wait(timeout);
    kept_->wait();
    return done;
  }
  void abort() override { inner_->abort(); }
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override { return kept_; }

 private:
  Ptr inner_;
  c10::intrusive_ptr<c10::ivalue::Future> kept_;
};

struct Spans {
  std::mutex lock;
  std::vector<std::tuple<int64_t, int64_t, int64_t>> done;  // (launch, completion, bytes)
};

class TimingBackend : public Backend {
 public:
  TimingBackend(c10::intrusive_ptr<Backend> inner, bool record)
      : Backend(inner->getRank(), inner->getSize()),
        inner_(std::move(inner)),
        record_(record),
        spans_(std::make_shared<Spans>()) {}

  const std::string getBackendName() const override { return "timing"; }

  Ptr allreduce(std::vector<at::Tensor>& t, const c10d::AllreduceOptions& o) override {
    if (!record_) {
      return inner_->allreduce(t, o);
    }
    int64_t nbytes = 0;
    for (const at::Tensor& x : t) {
      nbytes += x.numel() * x.element_size();
    }
    const int64_t t0 = now_ns();
    Ptr work = inner_->allreduce(t, o);
    std::shared_ptr<Spans> spans = spans_;
    c10::intrusive_ptr<c10::ivalue::Future> fut = work->getFuture();
    auto kept = fut->then(
        [spans, t0, nbytes](c10::ivalue::Future& f) -> c10::IValue {
          const int64_t t1 = now_ns();
          {
            std::lock_guard<std::mutex> g(spans->lock);
            spans->done.emplace_back(t0, t1, nbytes);
          }
          return f.value();
        },
        fut->elementType());
    return c10::make_intrusive<KeptWork>(std::move(work), std::move(kept));
  }

  Ptr broadcast(std::vector<at::Tensor>& t, const c10d::BroadcastOptions& o) override {
    return inner_->broadcast(t, o);
  }
  Ptr allreduce_coalesced(std::vector<at::Tensor>& t,
                          const c10d::AllreduceCoalescedOptions& o) override {
    return inner_->allreduce_coalesced(t, o);
  }
  Ptr reduce(std::vector<at::Tensor>& t, const c10d::ReduceOptions& o) override {
    return inner_->reduce(t, o);
  }
  Ptr allgather(std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in,
                const c10d::AllgatherOptions& o) override {
    return inner_->allgather(out, in, o);
  }
  Ptr _allgather_base(at::Tensor& out, at::Tensor& in, const c10d::AllgatherOptions& o) override {
    return inner_->_allgather_base(out, in, o);
  }
  Ptr allgather_coalesced(std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in,
                          const c10d::AllgatherOptions& o) override {
    return inner_->allgather_coalesced(out, in, o);
  }
  Ptr gather(std::vector<std::vector<at::Tensor>>& out, std::vector<at::Tensor>& in,
             const c10d::GatherOptions& o) override {
    return inner_->gather(out, in, o);
  }
  Ptr scatter(std::vector<at::Tensor>& out, std::vector<std::vector<at::Tensor>>& in,
              const c10d::ScatterOptions& o) override {
    return inner_->scatter(out, in, o);
  }
  Ptr reduce_scatter(std::vector<at::Tensor>& out, std::vector<std::vector<at::Tensor>>& in,
                     const c10d::ReduceScatterOptions& o) override {
    return inner_->reduce_scatter(out, in, o);
  }
  Ptr alltoall_base(at::Tensor& out, at::Tensor& in, std::vector<int64_t>& out_splits,
                    std::vector<int64_t>& in_splits, const c10d::AllToAllOptions& o) override {
    return inner_->alltoall_base(out, in, out_splits, in_splits, o);
  }
  Ptr send(std::vector<at::Tensor>& t, int dst, int tag) override {
    return inner_->send(t, dst, tag);
  }
  Ptr recv(std::vector<at::Tensor>& t, int src, int tag) override {
    return inner_->recv(t, src, tag);
  }
  Ptr barrier(const c10d::BarrierOptions& o) override { return inner_->barrier(o); }

  // The all-reduces completed since the last call: [(launch_ns, end_ns, bytes), ...].
  std::vector<std::tuple<int64_t, int64_t, int64_t>> take() {
    std::lock_guard<std::mutex> g(spans_->lock);
    std::vector<std::tuple<int64_t, int64_t, int64_t>> out;
    out.swap(spans_->done);
    return out;
  }

  // The same, as the tracer's span tuples (name, cat, ts_us, dur_us, lane, step, args), in
  // launch order, numbered from 0 ("all_reduce bucket i", args bytes and bucket); with
  // seq >= 0 each is also marked as an automatic collective numbered seq + 1, seq + 2...
  // Made here, with the GIL held: at a step's end a Python loop over them costs more.
  py::list take_spans(int64_t origin_ns, int64_t step, int64_t lane, int64_t seq) {
    std::vector<std::tuple<int64_t, int64_t, int64_t>> rows;
    {
      std::lock_guard<std::mutex> g(spans_->lock);
      rows.swap(spans_->done);
    }
    std::sort(rows.begin(), rows.end());
    py::list out;
    for (size_t i = 0; i < rows.size(); i++) {
      const auto& [t0, t1, nbytes] = rows[i];
      py::dict args;
      args["bytes"] = nbytes;
      args["bucket"] = static_cast<int64_t>(i);
      if (seq >= 0) {
        args["auto"] = true;
        args["collective"] = true;
        args["seq"] = seq + static_cast<int64_t>(i) + 1;
      }
      out.append(py::make_tuple("all_reduce bucket " + std::to_string(i), "comm",
                                (t0 - origin_ns) / 1000.0, (t1 - t0) / 1000.0, lane, step,
                                args));
    }
    return out;
  }

 private:
  c10::intrusive_ptr<Backend> inner_;
  bool record_;  // false: pass the all-reduce on, nothing else
  std::shared_ptr<Spans> spans_;
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<TimingBackend, Backend, c10::intrusive_ptr<TimingBackend>>(m, "TimingBackend")
      .def(py::init([](const c10::intrusive_ptr<Backend>& inner, bool record) {
             return c10::make_intrusive<TimingBackend>(inner, record);
           }),
           py::arg("inner"), py::arg("record") = true)
      .def("take", &TimingBackend::take, py::call_guard<py::gil_scoped_release>())
      .def("take_spans", &TimingBackend::take_spans);
}
