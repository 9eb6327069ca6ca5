-- loopc for Neovim (0.7 or newer): `.loop` files get the `loop` filetype, basic highlighting,
-- and `loopc lsp` as their language server (diagnostics, hover, go to definition, references,
-- rename, completion, formatting, code actions; Neovim 0.9+ also shows semantic colours).
--
-- Set-up: copy this file to ~/.config/nvim/lua/loopc.lua and add to your init.lua
--
--   require('loopc').setup()                                   -- `loopc` on PATH
--   require('loopc').setup({ cmd = { '/path/to/loopc', 'lsp' } })
--
-- Options: `cmd` (the server command), `on_attach` and `capabilities` (passed to the client,
-- as with nvim-lspconfig). The usual keys work once attached: `vim.lsp.buf.hover()`,
-- `vim.lsp.buf.definition()`, `vim.lsp.buf.rename()`, `vim.lsp.buf.formatting()` (0.7) or
-- `vim.lsp.buf.format()` (0.8+), `vim.lsp.buf.code_action()`, and `vim.lsp.codelens.run()`
-- to run the example under the cursor.
local M = {}

-- The nearest directory above `path` holding a `.git`, else the file's own directory.
local function root_dir(path)
  local dir = vim.fn.fnamemodify(path, ':p:h')
  local git = vim.fn.finddir('.git', dir .. ';')
  if git ~= '' then
    return vim.fn.fnamemodify(git, ':p:h:h')
  end
  return dir
end

-- Keywords, types, strings and comments, for Neovim versions without semantic tokens.
local function syntax()
  vim.cmd([[
    syntax keyword loopKeyword program input output model tool signature step return metric optimize feedback example memory
    syntax keyword loopKeyword in out predict chain_of_thought call using http command held_out
    syntax keyword loopType text int float bool json label list
    syntax keyword loopBoolean true false
    syntax match loopNumber "\v<-?\d+(\.\d+)?([eE][+-]?\d+)?>"
    syntax region loopString start=+"""+ end=+"""+
    syntax region loopString start=+"\(""\)\@!+ skip=+\\\\\|\\"+ end=+"+ end=+$+ oneline
    syntax match loopComment "//.*$"
    highlight default link loopKeyword Keyword
    highlight default link loopType Type
    highlight default link loopBoolean Boolean
    highlight default link loopNumber Number
    highlight default link loopString String
    highlight default link loopComment Comment
  ]])
end

function M.setup(opts)
  opts = opts or {}
  local cmd = opts.cmd or { 'loopc', 'lsp' }
  local clients = {}
  local group = vim.api.nvim_create_augroup('loopc', { clear = true })
  vim.api.nvim_create_autocmd({ 'BufRead', 'BufNewFile' }, {
    group = group,
    pattern = '*.loop',
    callback = function()
      vim.bo.filetype = 'loop'
    end,
  })
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = 'loop',
    callback = function(args)
      local bufnr = args.buf
      vim.bo[bufnr].commentstring = '// %s'
      syntax()
      local root = root_dir(vim.api.nvim_buf_get_name(bufnr))
      local config = { name = 'loopc', cmd = cmd, root_dir = root, on_attach = opts.on_attach, capabilities = opts.capabilities }
      if vim.lsp.start then
        -- Neovim 0.8+: starts a client per root, or reuses the running one.
        vim.lsp.start(config, { bufnr = bufnr })
        return
      end
      -- Neovim 0.7: one client per root, started once and attached to each buffer.
      local id = clients[root]
      if id == nil or vim.lsp.get_client_by_id(id) == nil then
        id = vim.lsp.start_client(config)
        clients[root] = id
      end
      if id then
        vim.lsp.buf_attach_client(bufnr, id)
      end
    end,
  })
end

return M
