// genzoo serve: the pages' behaviour. Every computation is a job on the server: a request answers with the result,
// or with the job's state, which is then polled (progress bar, Cancel button) until it is done.
"use strict";

const MODELS = JSON.parse(document.getElementById("models").textContent);
const BY_ID = Object.fromEntries(MODELS.map((m) => [m.id, m]));
const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

// ---- jobs ------------------------------------------------------------------------------------------------------

class Stopped extends Error {}

/** POST `fields` to /api/`action` and follow the job; `status` is a .status element. Resolves to the result. */
async function run(action, fields, status) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value instanceof Blob) form.append(name, value, `${name}.png`);
    else form.append(name, String(value));
  }
  const started = performance.now();
  const view = statusView(status);
  view.busy();
  try {
    let response = await fetch(`/api/${action}`, { method: "POST", body: form });
    let body = await response.json();
    while (response.status === 202) {
      view.progress(body, () => fetch(`/api/jobs/${body.job}`, { method: "DELETE" }));
      response = await fetch(`/api/jobs/${body.job}?wait=0.5`);
      body = await response.json();
    }
    if (!response.ok) throw new Error(body.error || response.statusText);
    if (body.status === "cancelled") throw new Stopped("cancelled");
    const seconds = (performance.now() - started) / 1000;
    view.done(`${seconds.toFixed(2)} s`);
    return body.result;
  } catch (error) {
    view.failed(error instanceof Stopped ? "cancelled" : error.message);
    error.shown = true;
    throw error;
  }
}

function statusView(status) {
  const bar = status ? $("progress", status) : null;
  const cancel = status ? $(".cancel", status) : null;
  const message = status ? $(".message", status) : null;
  const say = (text, isError = false) => {
    if (!message) return;
    message.textContent = text;
    message.classList.toggle("error", isError);
  };
  return {
    busy() {
      if (bar) { bar.hidden = true; bar.value = 0; }
      if (cancel) cancel.hidden = true;
      say("working…");
    },
    progress(state, onCancel) {
      if (bar) { bar.hidden = false; bar.value = state.progress || 0; }
      if (cancel) {
        cancel.hidden = false;
        cancel.onclick = () => { cancel.disabled = true; onCancel(); };
        cancel.disabled = false;
      }
      say(`${state.status}, ${Math.round((state.progress || 0) * 100)}%`);
    },
    done(text) {
      if (bar) bar.hidden = true;
      if (cancel) cancel.hidden = true;
      say(text);
    },
    failed(text) {
      if (bar) bar.hidden = true;
      if (cancel) cancel.hidden = true;
      say(text, true);
    },
  };
}

/** Runs `task`, letting a failure that run() has shown in the page end there (any other is a bug: rethrown). */
function quietly(task) {
  return async (...args) => {
    try {
      await task(...args);
    } catch (error) {
      if (!error.shown) throw error;
    }
  };
}

/** Show a data URL in an <img>, enlarged by a whole factor to about `width` pixels (pixels stay sharp). */
function show(img, url, width = 280) {
  img.onload = () => {
    const factor = Math.max(1, Math.floor(width / img.naturalWidth));
    img.style.width = `${img.naturalWidth * factor}px`;
  };
  img.src = url;
  img.hidden = false;
}

// ---- drawing pads ----------------------------------------------------------------------------------------------

/** A 280x280 canvas to draw white strokes on black, like an MNIST digit at 10x. */
class Pad {
  constructor(canvas) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.clear();
    let drawing = false;
    const point = (event) => {
      const box = canvas.getBoundingClientRect();
      return [((event.clientX - box.left) * canvas.width) / box.width, ((event.clientY - box.top) * canvas.height) / box.height];
    };
    canvas.addEventListener("pointerdown", (event) => {
      drawing = true;
      canvas.setPointerCapture(event.pointerId);
      const [x, y] = point(event);
      this.context.beginPath();
      this.context.moveTo(x, y);
      this.context.lineTo(x + 0.01, y);
      this.context.stroke();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drawing) return;
      const [x, y] = point(event);
      this.context.lineTo(x, y);
      this.context.stroke();
    });
    const finish = () => {
      if (!drawing) return;
      drawing = false;
      canvas.dispatchEvent(new Event("stroke"));
    };
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
  }

  clear() {
    const c = this.context;
    c.fillStyle = "#000";
    c.fillRect(0, 0, this.canvas.width, this.canvas.height);
    c.strokeStyle = "#fff";
    c.lineWidth = 22;
    c.lineCap = "round";
    c.lineJoin = "round";
  }

  blob() {
    return new Promise((resolve) => this.canvas.toBlob(resolve, "image/png"));
  }

  /** Paint an image (a data URL) over the whole pad, its pixels enlarged. */
  load(url) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => {
        this.context.imageSmoothingEnabled = false;
        this.context.drawImage(image, 0, 0, this.canvas.width, this.canvas.height);
        resolve();
      };
      image.onerror = () => reject(new Error("the image could not be shown"));
      image.src = url;
    });
  }
}

function pads() {
  const made = {};
  for (const canvas of $$("canvas.pad")) made[canvas.id] = new Pad(canvas);
  for (const button of $$("button.clear")) button.addEventListener("click", () => made[button.dataset.pad].clear());
  return made;
}

// ---- model picker ----------------------------------------------------------------------------------------------

/** The page's model <select>: fills in the paper and card link, calls `onChange(model)` now and on each change. */
function picker(onChange) {
  const select = $("#model");
  if (!select) return null;
  const update = () => {
    const model = BY_ID[select.value];
    $(".picker .paper").textContent = model.paper;
    $(".picker .meta").textContent = [model.data, model.headline].filter(Boolean).join(" · ");
    $(".picker .card-link").href = `/api/models/${encodeURIComponent(model.id)}/card`;
    onChange(model);
  };
  select.addEventListener("change", update);
  update();
  return select;
}

const randomSeed = () => Math.floor(Math.random() * 1e6);

// ---- pages -----------------------------------------------------------------------------------------------------

const PAGES = {
  gallery() {
    const seed = $("#seed");
    const count = $("#count");
    const drawAll = async () => {
      for (const card of $$(".card")) {
        await quietly(async () => {
          const result = await run("samples", { model: card.dataset.model, n: count.value, seed: seed.value }, $(".status", card));
          show($("img", card), result.image, 260);
        })();
      }
    };
    $("#resample").addEventListener("click", () => {
      seed.value = randomSeed();
      drawAll();
    });
    drawAll();
  },

  likelihood() {
    const { drawing } = pads();
    const statuses = $$(".status");
    const score = quietly(async () => {
      const result = await run("likelihood", { image: await drawing.blob() }, statuses[0]);
      for (const row of result.rows) {
        const line = $(`tr[data-model="${CSS.escape(row.id)}"]`);
        $(".nats", line).textContent = row.nll_nats.toFixed(1);
        $(".bits", line).textContent = row.bits_per_dim.toFixed(3);
        const ms = row.seconds * 1000;
        $(".time", line).textContent = `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
      }
    });
    $("#score").addEventListener("click", score);
    drawing.canvas.addEventListener("stroke", score);

    const completer = $("#complete-model");
    const complete = $("#complete");
    if (!completer.options.length) {
      $("#no-completion").hidden = false;
      complete.closest(".toolbar").hidden = true;
      return;
    }
    const methods = () => {
      const model = BY_ID[completer.value];
      $("#complete-method").disabled = model.controls.methods.length === 0;
    };
    completer.addEventListener("change", methods);
    methods();
    complete.addEventListener("click", quietly(async () => {
      const fields = {
        model: completer.value, image: await drawing.blob(), n: $("#complete-count").value,
        method: $("#complete-method").value, seed: randomSeed(),
      };
      show($("#completions"), (await run("complete", fields, statuses[1])).image, 600);
    }));
  },

  latent() {
    const made = pads();
    const [walkStatus, manifoldStatus] = $$(".status");
    const select = picker((model) => {
      $("#manifold").disabled = !model.controls.manifold;
      $("#no-manifold").hidden = model.controls.manifold;
    });
    for (const button of $$("button.sample-into")) {
      button.addEventListener("click", quietly(async () => {
        const result = await run("sample-one", { model: select.value, seed: randomSeed() }, walkStatus);
        await made[button.dataset.pad].load(result.image);
      }));
    }
    $("#walk").addEventListener("click", quietly(async () => {
      const fields = {
        model: select.value, image_a: await made.start.blob(), image_b: await made.end.blob(),
        steps: $("#steps").value, spherical: $("#spherical").checked,
      };
      show($("#walk-result"), (await run("walk", fields, walkStatus)).image, 900);
    }));
    $("#manifold").addEventListener("click", quietly(async () => {
      const fields = { model: select.value, size: $("#manifold-size").value };
      show($("#manifold-result"), (await run("manifold", fields, manifoldStatus)).image, 560);
    }));
  },

  infogan() {
    const status = $(".status");
    let seed = 0;
    let busy = false;
    let again = false;
    const draw = quietly(async () => {
      if (busy) { again = true; return; }
      busy = true;
      try {
        const codes = $$("#sliders input").map((input) => input.value).join(",");
        const fields = { model: $("#model").value, category: $("#category").value, continuous: codes, seed };
        const result = await run("infogan", fields, status);
        show($("#infogan-image"), result.image, 224);
        show($("#infogan-row"), result.row, 560);
      } finally {
        busy = false;
        if (again) { again = false; draw(); }
      }
    });
    picker((model) => {
      const { categories, continuous, range } = model.controls;
      const category = $("#category");
      category.replaceChildren(...Array.from({ length: categories }, (_, k) => new Option(`${k}`, `${k}`)));
      const sliders = $("#sliders");
      sliders.replaceChildren();
      for (let j = 0; j < continuous; j += 1) {
        const row = document.createElement("label");
        row.className = "slider";
        row.innerHTML = `<span>c${j + 1}</span><input type="range" min="${-range}" max="${range}" step="0.1" value="0"><output>0.0</output>`;
        const input = $("input", row);
        input.addEventListener("input", () => { $("output", row).textContent = Number(input.value).toFixed(1); draw(); });
        sliders.append(row);
      }
      draw();
    });
    $("#category").addEventListener("change", draw);
    $("#reroll").addEventListener("click", () => {
      seed = randomSeed();
      $("#z-seed").textContent = seed;
      draw();
    });
  },

  text2image() {
    const status = $(".status");
    const caption = $("#caption");
    const select = picker((model) => {
      const words = $("#vocabulary");
      words.replaceChildren(...model.controls.vocabulary.map((word) => {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = word;
        button.addEventListener("click", () => { caption.value = `${caption.value.trimEnd()} ${word}`.trimStart(); });
        return button;
      }));
    });
    $("#caption-form").addEventListener("submit", quietly(async (event) => {
      event.preventDefault();
      const fields = { model: select.value, text: caption.value, n: $("#caption-count").value, seed: randomSeed() };
      show($("#caption-result"), (await run("text2image", fields, status)).image, 560);
    }));
  },

  translation() {
    const { source } = pads();
    const status = $(".status");
    let uploaded = null;
    $("#upload").addEventListener("change", (event) => { uploaded = event.target.files[0] || null; });
    source.canvas.addEventListener("stroke", () => { uploaded = null; $("#upload").value = ""; });
    const select = picker((model) => {
      const targets = $("#targets");
      targets.replaceChildren(Object.assign(document.createElement("legend"), { textContent: "target" }));
      if (model.controls.targets) {
        model.controls.targets.forEach((target, index) => {
          const radio = Object.assign(document.createElement("input"), { type: "radio", name: "to", value: target.value });
          radio.checked = index === 1;
          const label = document.createElement("label");
          label.append(radio, ` ${target.value}: ${target.label}`);
          targets.append(label);
        });
      } else {
        for (const [group, values] of Object.entries(model.controls.groups)) {
          const label = document.createElement("label");
          label.textContent = `${group} `;
          const choice = selectOf(["keep", ...values]);
          choice.dataset.group = group;
          label.append(choice);
          targets.append(label);
        }
        const colour = $("select[data-group=colour]", targets);  // absent for named attributes (celeba)
        if (colour) colour.value = "red";
      }
    });
    $("#translate").addEventListener("click", quietly(async () => {
      const chosen = $("input[name=to]:checked");
      const to = chosen ? chosen.value : $$("#targets select").map((s) => s.value).filter((v) => v !== "keep").join(",");
      const image = uploaded || (await source.blob());
      const result = await run("translate", { model: select.value, image, to }, status);
      show($("#translation-input"), result.input, 224);
      show($("#translation-output"), result.output, 224);
    }));
  },

  puzzlegan() {
    const canvas = $("#puzzle-source");
    const context = canvas.getContext("2d");
    const status = $(".status");
    let model = null;
    let image = null; // data URL of the source at the model's size
    let corners = [];
    const paint = () => {
      context.fillStyle = "#000";
      context.fillRect(0, 0, canvas.width, canvas.height);
      if (!image) return;
      context.imageSmoothingEnabled = false;
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      const [, height, width] = model.image_shape;
      const size = model.controls.patch_size;
      context.strokeStyle = "#ffb000";
      context.lineWidth = 3;
      for (const [top, left] of corners) {
        context.strokeRect((left * canvas.width) / width, (top * canvas.height) / height,
          (size * canvas.width) / width, (size * canvas.height) / height);
      }
      $("#patch-help").textContent = `${corners.length} of ${model.controls.patch_count} patches placed: click to place`;
    };
    const useImage = (url) => new Promise((resolve) => {
      const loaded = new Image();
      loaded.onload = () => { image = loaded; corners = []; paint(); resolve(); };
      loaded.src = url;
    });
    const testDigit = quietly(async () => {
      await useImage((await run("test-image", { model: model.id, seed: randomSeed() }, status)).image);
    });
    const select = picker((chosen) => { model = chosen; image = null; corners = []; paint(); testDigit(); });
    canvas.addEventListener("click", (event) => {
      if (!image) return;
      const box = canvas.getBoundingClientRect();
      const [, height, width] = model.image_shape;
      const size = model.controls.patch_size;
      const x = ((event.clientX - box.left) / box.width) * width;
      const y = ((event.clientY - box.top) / box.height) * height;
      const clamp = (value, high) => Math.max(0, Math.min(high, Math.round(value - size / 2)));
      corners.push([clamp(y, height - size), clamp(x, width - size)]);
      if (corners.length > model.controls.patch_count) corners.shift();
      paint();
    });
    $("#test-digit").addEventListener("click", testDigit);
    $("#puzzle-upload").addEventListener("change", quietly(async (event) => {
      const file = event.target.files[0];
      if (!file) return;
      await useImage((await run("decode", { model: select.value, image: file }, status)).image);
    }));
    const solve = async (auto) => {
      if (!image) return;
      const blob = await new Promise((resolve) => {
        const small = document.createElement("canvas");
        [small.width, small.height] = [image.naturalWidth, image.naturalHeight];
        small.getContext("2d").drawImage(image, 0, 0);
        small.toBlob(resolve, "image/png");
      });
      const placed = auto ? "" : corners.map((c) => c.join(",")).join(";");
      const result = await run("puzzle", { model: select.value, image: blob, corners: placed, seed: randomSeed() }, status);
      corners = result.corners;
      paint();
      show($("#puzzle-result"), result.image, 700);
    };
    $("#auto-patches").addEventListener("click", quietly(() => solve(true)));
    $("#solve").addEventListener("click", quietly(() => solve(corners.length !== model.controls.patch_count)));
  },

  progan() {
    const status = $(".status");
    const select = picker(() => {});
    $("#grow").addEventListener("click", quietly(async () => {
      const fields = { model: select.value, n: $("#count").value, seed: $("#seed").value };
      const result = await run("progan", fields, status);
      $("#resolutions").replaceChildren(...result.rows.map((row) => {
        const figure = document.createElement("figure");
        const img = document.createElement("img");
        img.className = "pixelated";
        img.alt = `${row.resolution}x${row.resolution}`;
        figure.append(Object.assign(document.createElement("figcaption"), { textContent: `${row.resolution}x${row.resolution}` }), img);
        show(img, row.image, 640);
        return figure;
      }));
    }));
    $("#grow").click();
  },
};

/** A <select> of `values`. */
function selectOf(values) {
  const select = document.createElement("select");
  select.append(...values.map((value) => new Option(value, value)));
  return select;
}

const page = document.body.dataset.page;
if (MODELS.length && PAGES[page]) PAGES[page]();
